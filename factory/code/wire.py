"""The wire between the tests' process and the solution's: plain data by value, everything else by reference.

Runs inside the sandbox on both sides (copied into the working directory; the harness loads it by
path, since no writable folder is on its import path): the standard library only. A message is a
4-byte length and a JSON array. A value crosses as tagged plain data
when its type is exactly one of a fixed set of built-in and standard-library types (so a solution's
object cannot pose as an int, a list or a dict on the other side); anything else stays in the process
that made it and crosses as a reference, a number the other side can send operations on.

`Peer` is one side of the wire. A request is answered by a reply with its number; while it waits,
a side serves the requests the other side sends meanwhile (a test calls a solution's function, which
calls back a key function the test passed: both wait on each other, one level deeper each time).
"""

import base64
import collections
import datetime
import decimal
import fractions
import json
import operator
import os
import struct
import traceback

MAX_MESSAGE = 32 << 20  # a reply bigger than this is a broken protocol, not data to hold in memory
MAX_DEPTH = 64  # deeper containers cross by reference
PLUMBING = ("wire.py", "worker.py", "harness.py", "_launcher.py")  # frames left out of tracebacks

# Operations one side may ask of an object the other side holds, by name.
OPERATIONS = {
    "getattr": getattr, "setattr": setattr, "delattr": delattr,
    "getitem": operator.getitem, "setitem": operator.setitem, "delitem": operator.delitem,
    "len": len, "iter": iter, "next": next, "contains": operator.contains, "repr": repr, "str": str,
    "isinstance": lambda cls, value: isinstance(value, cls), "issubclass": lambda cls, sub: issubclass(sub, cls),
    "eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge,
    "add": operator.add, "sub": operator.sub, "mul": operator.mul, "truediv": operator.truediv,
    "floordiv": operator.floordiv, "mod": operator.mod, "pow": operator.pow, "matmul": operator.matmul,
    "and": operator.and_, "or": operator.or_, "xor": operator.xor, "lshift": operator.lshift, "rshift": operator.rshift,
    "neg": operator.neg, "pos": operator.pos, "abs": abs, "invert": operator.invert,
    "enter": lambda target: target.__enter__(), "exit": lambda target: target.__exit__(None, None, None),
}
COMPARISONS = ("eq", "ne", "lt", "le", "gt", "ge")
ARITHMETIC = ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor", "lshift", "rshift")
OPERATIONS |= {f"r{name}": (lambda op: lambda target, other: op(other, target))(OPERATIONS[name]) for name in ARITHMETIC}
SERVED = frozenset(OPERATIONS) | {"call"}
EXITS = ("SystemExit", "KeyboardInterrupt", "GeneratorExit")  # a process ending itself, not an error to catch


class WireError(Exception):
    """The other side went away or broke the protocol."""


class RemoteException(Exception):
    """An exception raised on the other side, of a type this side has no mirror for."""


class EarlyExit(Exception):
    """The other side ended its process, or raised SystemExit or KeyboardInterrupt, in the middle of a request."""


# -- framing ---------------------------------------------------------------------------------------------------------


def send(fd, message):
    data = json.dumps(message, separators=(",", ":")).encode("utf-8")
    view = memoryview(struct.pack(">I", len(data)) + data)
    while view:
        try:
            written = os.write(fd, view)
        except OSError as exc:
            raise WireError(f"the other side is gone ({exc.strerror})") from None
        view = view[written:]


def _read(fd, size):
    chunks, left = [], size
    while left:
        try:
            chunk = os.read(fd, min(left, 1 << 20))
        except OSError as exc:
            raise WireError(f"the other side is gone ({exc.strerror})") from None
        if not chunk:
            raise WireError("the other side ended its process")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def receive(fd):
    (size,) = struct.unpack(">I", _read(fd, 4))
    if size > MAX_MESSAGE:
        raise WireError(f"a message of {size} bytes (the limit is {MAX_MESSAGE})")
    try:
        message = json.loads(_read(fd, size))
    except (ValueError, RecursionError):
        raise WireError("a message that is not JSON") from None
    if not isinstance(message, list) or not message or not isinstance(message[0], str):
        raise WireError("a message that is not a tagged list")
    return message


# -- plain data ------------------------------------------------------------------------------------------------------


def _b64(data):
    return base64.b64encode(bytes(data)).decode("ascii")


# Exact types that cross by value, and how (a subclass of any of them crosses by reference).
SCALARS = {
    type(None): lambda v: ["N"], bool: lambda v: ["B", v], int: lambda v: ["I", str(v)], float: lambda v: ["F", repr(v)],
    complex: lambda v: ["C", repr(v.real), repr(v.imag)], str: lambda v: ["S", v], bytes: lambda v: ["Y", _b64(v)],
    bytearray: lambda v: ["YA", _b64(v)], decimal.Decimal: lambda v: ["DEC", str(v)],
    fractions.Fraction: lambda v: ["FR", str(v.numerator), str(v.denominator)],
    datetime.datetime: lambda v: ["DT", v.isoformat()], datetime.date: lambda v: ["DA", v.isoformat()],
    datetime.time: lambda v: ["TM", v.isoformat()], datetime.timedelta: lambda v: ["TD", v.days, v.seconds, v.microseconds],
    range: lambda v: ["RG", v.start, v.stop, v.step],
}
SEQUENCES = {list: "L", tuple: "T", set: "E", frozenset: "FE", collections.deque: "Q"}
MAPPINGS = {dict: "D", collections.OrderedDict: "OD", collections.Counter: "CT", collections.defaultdict: "DD"}
SEQUENCE_TYPES = {tag: kind for kind, tag in SEQUENCES.items()}
MAPPING_TYPES = {tag: kind for kind, tag in MAPPINGS.items()}  # each built from a dict (a Counter would count pairs)
# Plain types a call may change in place: their new contents go back to the caller (see `_update`).
MUTABLE = (bytearray, *(kind for kind in (*SEQUENCES, *MAPPINGS) if kind not in (tuple, frozenset)))
PLAIN = {  # tag -> the value from the rest of its array
    "N": lambda r: None, "B": lambda r: _exact(r[0], bool), "I": lambda r: int(r[0]), "F": lambda r: float(r[0]),
    "C": lambda r: complex(float(r[0]), float(r[1])), "S": lambda r: _exact(r[0], str),
    "Y": lambda r: base64.b64decode(r[0]), "YA": lambda r: bytearray(base64.b64decode(r[0])),
    "DEC": lambda r: decimal.Decimal(r[0]), "FR": lambda r: fractions.Fraction(int(r[0]), int(r[1])),
    "DT": lambda r: datetime.datetime.fromisoformat(r[0]), "DA": lambda r: datetime.date.fromisoformat(r[0]),
    "TM": lambda r: datetime.time.fromisoformat(r[0]),
    "TD": lambda r: datetime.timedelta(days=r[0], seconds=r[1], microseconds=r[2]),
    "RG": lambda r: range(int(r[0]), int(r[1]), int(r[2])),
}


def _exact(value, kind):
    if type(value) is not kind:
        raise TypeError(f"{kind.__name__} expected, not {type(value).__name__}")
    return value


def _is_namedtuple(kind):
    return (kind.__bases__ == (tuple,) and isinstance(getattr(kind, "_fields", None), tuple)
            and all(type(f) is str for f in kind._fields) and kind.__eq__ is tuple.__eq__)


class Peer:
    """One side of the wire on file descriptor `fd`. `strict`: the tests' side, which takes no object of
    the other side's at face value (see `Remote`) and serves nothing but calls to what it passed over."""

    def __init__(self, fd, *, strict):
        self.fd = fd
        self.strict = strict
        self.objects = {}  # number -> an object of ours the other side holds a reference to
        self.numbers = {}  # id(object) -> its number (objects stay alive: they are in self.objects)
        self.remotes = {}  # number -> the Remote standing for an object of theirs
        self.mirrors = {}  # number -> the local exception class standing for one of theirs
        self.requests = 0
        self.untrusted = []  # what the strict side refused to take on trust, in order
        self.exits = []  # how the other side ended itself during a request: SystemExit(0), ...
        self.gone = ""  # when the other side's process stopped answering ("while loading", ...), if it did

    # values -> wire

    def encode(self, value, depth=0):
        kind = type(value)
        if kind in SCALARS:
            return SCALARS[kind](value)
        if isinstance(value, Remote) and value._peer is self:
            return ["P", value._number]  # theirs, going home
        if depth < MAX_DEPTH:
            if kind in SEQUENCES:
                return [SEQUENCES[kind], [self.encode(v, depth + 1) for v in value]]
            if kind in MAPPINGS:
                return [MAPPINGS[kind], [[self.encode(k, depth + 1), self.encode(v, depth + 1)] for k, v in value.items()]]
            if issubclass(kind, tuple) and _is_namedtuple(kind):
                return ["NT", kind.__name__, list(kind._fields), [self.encode(v, depth + 1) for v in value]]
        return self.refer(value)

    def refer(self, value):
        """A reference to an object of ours. The strict side lends only what the other side may call back."""
        if self.strict and not callable(value):
            raise TypeError(f"a {type(value).__name__} object cannot be passed to the solution: only plain data, "
                            "the solution's own objects and functions cross")
        number = self.numbers.get(id(value))
        if number is None:
            number = self.numbers[id(value)] = len(self.objects) + 1
            self.objects[number] = value
        if isinstance(value, type) and issubclass(value, BaseException):
            bases = [k.__name__ for k in value.__mro__ if k.__module__ == "builtins" and issubclass(k, BaseException)]
            return ["X", number, value.__name__, bases]
        if type(value).__name__ == "module" and isinstance(getattr(value, "__name__", None), str):
            return ["M", value.__name__, number]
        return ["R", number, type(value).__name__]

    # wire -> values

    def decode(self, data):
        try:
            return self._decode(data)
        except WireError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever a malformed value raises
            raise WireError(f"a malformed value ({type(exc).__name__}: {exc})") from None

    def _decode(self, data):
        tag, rest = data[0], data[1:]
        if tag in PLAIN:
            return PLAIN[tag](rest)
        if tag in SEQUENCE_TYPES:
            return SEQUENCE_TYPES[tag](self._decode(v) for v in rest[0])
        if tag in MAPPING_TYPES:
            pairs = dict((self._decode(k), self._decode(v)) for k, v in rest[0])
            return collections.defaultdict(None, pairs) if tag == "DD" else MAPPING_TYPES[tag](pairs)
        if tag == "NT":
            return collections.namedtuple(str(rest[0]), [str(f) for f in rest[1]])(*(self._decode(v) for v in rest[2]))
        if tag == "P":
            return self.objects[int(rest[0])]
        if tag == "M":
            return self._module(str(rest[0]), int(rest[1]))
        if tag == "X":
            return self._mirror(int(rest[0]), str(rest[1]), [str(b) for b in rest[2]])
        if tag == "R":
            number = int(rest[0])
            if number not in self.remotes:
                self.remotes[number] = Remote(self, number, str(rest[1]))
            return self.remotes[number]
        raise TypeError(f"unknown tag {tag!r}")

    def _module(self, name, number):
        """A module the other side imported: the same module, imported here (the standard library's only:
        this side's path holds no writable folder), or a reference when it cannot be."""
        import importlib

        try:
            return importlib.import_module(name)
        except Exception:  # noqa: BLE001 - their own module, or one this side cannot import
            return self._decode(["R", number, "module"])

    def _mirror(self, number, name, bases):
        """A local exception class for one of theirs: raised here when theirs is raised there, so that
        `except ValueError` and `pytest.raises(solution.TheirError)` work."""
        if number not in self.mirrors:
            import builtins

            base = next((getattr(builtins, b) for b in bases if isinstance(getattr(builtins, b, None), type)), Exception)
            if base in (BaseException, SystemExit, KeyboardInterrupt, GeneratorExit):
                base = Exception
            self.mirrors[number] = type(name, (base,), {"__module__": "solution"})
        return self.mirrors[number]

    def exception(self, data, trace):
        """The exception to raise here for one raised there (its traceback's text kept in `remote_trace`)."""
        import builtins

        tag, name, message = data[0], str(data[1]), str(data[2])
        if tag == "B" and name in EXITS:
            self.exits.append(f"{name}({message})")
            error = EarlyExit(f"the solution raised {name}({message}) during the tests")
            error.remote_trace = str(trace)
            return error
        if tag == "B" and isinstance(getattr(builtins, name, None), type) and issubclass(getattr(builtins, name), BaseException):
            kind = getattr(builtins, name)
        elif tag == "X":
            kind = self._mirror(int(data[3]), name, [str(b) for b in data[4]])
        else:
            kind = RemoteException
        try:
            error = kind(message) if kind is not RemoteException else kind(f"{name}: {message}")
        except Exception:  # noqa: BLE001 - an exception type that takes other arguments
            error = RemoteException(f"{name}: {message}")
        error.remote_trace = str(trace)
        return error

    def describe(self, error):
        """An exception of ours as the other side will raise it, and its traceback's text without the
        wire's own frames (the solution's and the tests' lines are what a repair prompt needs)."""
        kind = type(error)
        frames = [f for f in traceback.extract_tb(error.__traceback__) if os.path.basename(f.filename) not in PLUMBING]
        trace = "".join(traceback.format_list(frames) + traceback.format_exception_only(kind, error))
        message = str(error)[:2000]
        if kind.__module__ == "builtins":
            return ["B", kind.__name__, message], trace
        exc = self.refer(kind)
        return ["X", kind.__name__, message, exc[1], exc[3]], trace

    # requests and replies

    def request(self, operation, target, *args, **kwargs):
        """Ask the other side to apply `operation` to `target` (a Remote) and return the result."""
        arguments = [self.encode(a) for a in args]
        keywords = [[k, self.encode(v)] for k, v in kwargs.items()]
        return self._ask("do", [operation, target._number, arguments, keywords], "during the tests", args, kwargs)

    def load(self, filename, source):
        """Have the other side run `source` as the module `solution`: the names it defines, as seen here."""
        return self._ask("load", [filename, source], "while loading", (), {})

    def _ask(self, kind, body, when, args, kwargs):
        self.requests += 1
        try:
            send(self.fd, [kind, self.requests, *body])
            return self.wait(self.requests, args, kwargs)
        except WireError as exc:  # the other side's process ended, or said something that is not the protocol
            self.gone = when
            raise EarlyExit(f"the solution's process stopped answering {when}: {exc}") from None

    def wait(self, number, args, kwargs):
        while True:
            message = receive(self.fd)
            if message[0] == "do":
                self.serve(message)
                continue
            if message[0] in ("ok", "raise") and len(message) >= 3 and message[1] == number:
                if message[0] == "raise":
                    raise self.exception(message[2], message[3] if len(message) > 3 else "")
                value = self.decode(message[2])
                for key, data in (message[3] if len(message) > 3 else []):
                    _update(args[key] if type(key) is int else kwargs[key], self.decode(data))
                return value
            raise WireError(f"an unexpected message ({message[0]!r}) while waiting for reply {number}")

    def serve(self, message):
        """Carry out one request of the other side's, and reply."""
        try:
            _, number, operation, target, arguments, keywords = message
            obj = self.objects[int(target)]
            if operation not in SERVED or (self.strict and operation != "call"):
                raise WireError(f"the operation {operation!r} is not served")
            args = [self.decode(a) for a in arguments]
            kwargs = {str(k): self.decode(v) for k, v in keywords}
        except WireError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise WireError(f"a malformed request ({type(exc).__name__}: {exc})") from None
        try:
            result = obj(*args, **kwargs) if operation == "call" else OPERATIONS[operation](obj, *args, **kwargs)
            # Arguments changed in place (a list sorted, a dict filled) go back, so the caller sees it done.
            changed = [[k, self.encode(v)] for k, v in [*enumerate(args), *kwargs.items()] if type(v) in MUTABLE]
            reply = ["ok", number, self.encode(result), changed]
        except WireError:
            raise
        except BaseException as exc:  # noqa: BLE001 - theirs to see, whatever it is (SystemExit included)
            error, trace = self.describe(exc)
            reply = ["raise", number, error, trace]
        send(self.fd, reply)


def _update(original, new):
    """Make `original` hold what `new` holds (a mutable argument changed on the other side)."""
    if type(original) is not type(new):
        return
    if isinstance(original, (list, bytearray)):
        original[:] = new
    elif isinstance(original, (dict, set)):
        original.clear()
        original.update(new)
    elif isinstance(original, collections.deque):
        original.clear()
        original.extend(new)


class UntrustedValue(TypeError):
    """The tests compared, or took the truth of, an object the solution made that is not plain data."""


def _binary(name):
    def method(self, other):
        if self._peer.strict and name in COMPARISONS and not isinstance(other, Remote):
            return self._untrusted(f"compared with {type(other).__name__} data")
        return self._peer.request(name, self, other)

    method.__name__ = f"__{name}__"
    return method


class Remote:
    """Stands for an object of the other side's: attribute access, calls, indexing, iteration and
    arithmetic are requests. On the strict side (the tests'), comparing one with plain data, or asking
    for its truth, raises UntrustedValue: an object whose `__eq__` or `__bool__` always says yes must
    not pass a test that compares values."""

    __slots__ = ("_peer", "_number", "_type")

    def __init__(self, peer, number, type_name):
        object.__setattr__(self, "_peer", peer)
        object.__setattr__(self, "_number", number)
        object.__setattr__(self, "_type", type_name)

    def _untrusted(self, what):
        note = f"a {self._type} object from the solution was {what}: the tests compare plain values only"
        self._peer.untrusted.append(note)
        raise UntrustedValue(note)

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__") and name not in ("__name__", "__doc__", "__qualname__"):
            raise AttributeError(name)
        return self._peer.request("getattr", self, name)

    def __setattr__(self, name, value):
        self._peer.request("setattr", self, name, value)

    def __delattr__(self, name):
        self._peer.request("delattr", self, name)

    def __call__(self, *args, **kwargs):
        return self._peer.request("call", self, *args, **kwargs)

    def __getitem__(self, key):
        return self._peer.request("getitem", self, key)

    def __setitem__(self, key, value):
        self._peer.request("setitem", self, key, value)

    def __delitem__(self, key):
        self._peer.request("delitem", self, key)

    def __len__(self):
        size = self._peer.request("len", self)
        if type(size) is not int:
            raise TypeError("len() of a solution's object must be an int")
        return size

    def __iter__(self):
        return self._peer.request("iter", self)

    def __next__(self):
        return self._peer.request("next", self)

    def __contains__(self, item):
        answer = self._peer.request("contains", self, item)
        if type(answer) is not bool:
            self._untrusted("asked whether it holds an item, and answered with something else than a bool")
        return answer

    def __repr__(self):
        return str(self._peer.request("repr", self))

    def __str__(self):
        return str(self._peer.request("str", self))

    def __hash__(self):
        return hash((Remote, self._number))

    def __bool__(self):
        if self._peer.strict:
            return self._untrusted("asked for its truth")
        return True

    def __enter__(self):
        return self._peer.request("enter", self)

    def __exit__(self, *info):
        return self._peer.request("exit", self)

    def __instancecheck__(self, value):
        return self._peer.request("isinstance", self, value) is True

    def __subclasscheck__(self, sub):
        return self._peer.request("issubclass", self, sub) is True


for _name in (*COMPARISONS, *ARITHMETIC, *(f"r{n}" for n in ARITHMETIC)):
    setattr(Remote, f"__{_name}__", _binary(_name))
for _name in ("neg", "pos", "abs", "invert"):
    setattr(Remote, f"__{_name}__", (lambda op: lambda self: self._peer.request(op, self))(_name))
