"""A deterministic dedup benchmark set: short review / critic / support texts with planted copies.

Every row belongs to a *group*. An original starts a group; its planted copies join it:

- exact copies: the same text with case, punctuation, whitespace or Unicode-width changes;
- near copies: the same text with a few word edits (substitute, insert, delete), at most about one
  edit per ten words (1 edit under 20 words, up to 2 under 30, up to 3 from 30 words);
- paraphrases are NOT copies: synonym swaps plus sentence / clause reordering of an original, sharing
  at most 60% of its word set. They start a group of their own, so a dedup filter that drops one
  loses precision.

An original is the source of at most one kind of copy, so recall can be reported per kind. Rows are
shuffled, so a copy may come before its original. Originals are composed of two or three template
sentences with many slots (and numbers, brands and names); no two share their templates and all but
two slot words. A few pairs of originals are still near copies by chance (three short slot words
apart, or one inside a longer one); `benchmarks/dedup.py` checks every drop outside the planted
groups with the exact Jaccard, so those count as the near copies they are.

    from dedup_data import make_dedup_set
    data = make_dedup_set(10_000, seed=0)
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass

from factory.records import Record
from factory.text import normalize

# --- vocabulary -------------------------------------------------------------------------------

_PRODUCTS = [
    "kettle", "toaster", "blender", "desk lamp", "office chair", "backpack", "phone case", "charger",
    "headphones", "coffee grinder", "air fryer", "vacuum", "water bottle", "keyboard", "mouse",
    "monitor stand", "rice cooker", "toothbrush", "yoga mat", "pair of hiking boots", "rain jacket",
    "frying pan", "space heater", "smart plug", "webcam", "laptop sleeve", "bike light", "tent",
    "suitcase", "standing desk", "router", "speaker", "humidifier", "tablet stand", "pillow",
]
_PARTS = [
    "handle", "lid", "cable", "button", "strap", "zipper", "base", "screen", "battery", "hinge",
    "switch", "fabric", "finish", "cushion", "filter", "motor", "plug", "buckle", "wheel", "stitching",
]
_POS = ["great", "solid", "excellent", "sturdy", "reliable", "lovely", "impressive", "decent", "nice", "superb"]
_NEG = ["flimsy", "cheap", "loose", "noisy", "awkward", "disappointing", "fragile", "wobbly", "clunky", "poor"]
_WHEN = [
    "last month", "two weeks ago", "in March", "for my birthday", "on sale", "before a trip",
    "after reading the reviews", "as a gift", "in the spring", "over the holidays", "last year", "on a whim",
]
_USES = [
    "daily use", "heavy use", "light use", "travel", "camping trips", "office work", "commuting",
    "weekend use", "cooking every night", "working from home", "school runs", "gym sessions",
]
_PEOPLE = ["wife", "husband", "son", "daughter", "roommate", "partner", "mother", "father", "neighbour", "sister"]
_FEATURES = [
    "battery life", "build quality", "design", "sound", "speed", "weight", "size", "price",
    "noise level", "grip", "setup", "warranty", "colour", "temperature control", "cleaning",
]
_BRANDS = [
    "Vorlex", "Quintara", "Halden", "Brisko", "Omnira", "Zentro", "Kelvo", "Lumio", "Pardo", "Stavik",
    "Trelli", "Ubex", "Wendal", "Yarrow", "Corvin", "Mirelle", "Noxa", "Orvo", "Pellam", "Rusko",
]
_REVIEW = [
    "I bought this {product} {when} for {price} and it has worked {pos} so far.",
    "The {part} feels {pos} but the {part2} is {neg} after {days}.",
    "After {days} of {use} the {product} still works like new.",
    "It arrived {when_short}, {days} after I ordered it, and the packaging was {pos}.",
    "Honestly the {feature} is {pos} for {price}.",
    "The {part} broke after {days}, which is {neg} for a {product}.",
    "I would recommend the {product} to anyone who needs something {pos} for {use}.",
    "Customer service replied within {days} and sent a new {part} for my {product}.",
    "My {person} uses it {freq} and has no complaints about the {feature} or the {feature2}.",
    "For {price} it is {pos}, although the {part} could be less {neg}.",
    "Compared to my old {product} the {feature} is much better and the {feature2} is {pos}.",
    "The {feature} is {neg} and the {part} started to rattle after {days}.",
    "Setup took {minutes} minutes and the instructions were {clarity}.",
    "I returned the first {product} because the {part} was {neg}, the replacement is {pos}.",
    "It gets {pos} marks from me for the {feature} and the {feature2}.",
    "Too {neg} for {use}.",
    "A {pos} {product}, with {pos2} {feature}.",
]

_FIRST = [
    "Ana", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Keiko", "Liam",
    "Maya", "Nikolai", "Olga", "Pablo", "Quinn", "Rosa", "Sami", "Tara", "Umar", "Vera", "Wen", "Yusuf",
]
_LAST = [
    "Adler", "Brennan", "Castillo", "Dubois", "Eriksen", "Fischer", "Gupta", "Hart", "Ivanova", "Jensen",
    "Kowalski", "Lindqvist", "Moreau", "Novak", "Okafor", "Petrov", "Quiroga", "Rossi", "Sato", "Tanaka",
]
_GENRES = ["drama", "comedy", "thriller", "horror film", "documentary", "western", "romance", "musical", "heist film", "war film"]
_ASPECTS = ["script", "score", "editing", "cinematography", "pacing", "dialogue", "ending", "cast", "production design", "humour"]
_ASPECT_GOOD = ["sparkles", "soars", "lands every beat", "holds it together", "carries the film", "hums along"]
_ASPECT_BAD = ["drags", "falls flat", "wears thin", "goes nowhere", "feels hollow", "overstays its welcome"]
_ROLES = ["widowed farmer", "retired boxer", "young nurse", "grieving father", "small-town cop", "con artist",
          "jazz pianist", "runaway teenager", "ship captain", "struggling chef", "hotel maid", "war reporter"]
_CRITIC = [
    "{name} directs this {genre} with {pos} restraint and a {pos2} eye for detail.",
    "The {aspect} {good}, but the {aspect2} {bad}.",
    "{name} gives a {pos} performance as a {role} who cannot let go of the past.",
    "A {neg} {genre} from {year} that mistakes noise for tension and length for depth.",
    "By the final act the {aspect} {bad} and the {aspect2} cannot save it.",
    "It is the rare {genre} of {year} that trusts its audience, and the {aspect} {good}.",
    "{name} and {name2} share a {pos} chemistry that the {aspect} never quite earns.",
    "{minutes} minutes of {neg} set pieces and a {aspect} that {bad}.",
    "As a {role} {name} is {pos}, and the {aspect} {good} whenever she is on screen.",
    "The {aspect} is {neg}, yet this {year} film still finds moments of {pos} grace.",
    "Fans of the {genre} will forgive the {aspect}, which {bad} for {minutes} minutes.",
    "This {pos} little {genre} runs {minutes} minutes and never wastes one.",
    "{name} is {pos} as the {role}, and the {aspect} {good}.",
    "A {pos} {genre}.",
    "{name} is {neg} here.",
]

_ISSUES = ["late delivery", "damaged parcel", "billing question", "password reset", "missing refund",
           "account lock", "wrong size", "cancelled order", "duplicate charge", "login problem", "broken item"]
_ACTIONS = ["issued a full refund", "sent a replacement", "reset your account", "escalated the case",
            "applied a credit", "updated your address", "cancelled the duplicate charge", "reopened the ticket"]
_RESULTS = ["the refund on your statement", "a confirmation email", "a tracking number", "the credit in your account",
            "an update from our warehouse", "a new invoice"]
_REQUESTS = ["send a photo of the label", "confirm your shipping address", "reply with the last four digits of the card",
             "restart the app and try again", "check your spam folder", "tell us which browser you use"]
_SUPPORT = [
    "Thanks for reaching out about your {issue} on order {order}.",
    "I'm sorry to hear about the {issue} with your {product}, that is not the experience we want for you.",
    "I have {action} and you should see {result} within {days}.",
    "Could you please {request} so we can finish case {ticket}?",
    "If the problem persists after {days}, reply to this email and quote ticket {ticket}.",
    "Your {issue} has been logged under ticket {ticket} and a colleague will call you {freq}.",
    "We have {action} for order {order}, so there is nothing else you need to do right now.",
    "Please allow {days} for the change to appear, and thank you for your patience, {name}.",
    "Our team in the {dept} department has checked order {order} and {action}.",
    "Let us know if you have any other questions about the {issue} or your {product}.",
    "Ticket {ticket} for {name}: we have {action}.",
    "Sorry about the {issue}, {name}.",
    "Ticket {ticket} is now {status}.",
]
_DEPTS = ["billing", "shipping", "returns", "accounts", "warehouse", "technical"]
_FREQ = ["every day", "twice a week", "most mornings", "on weekends", "every evening", "now and then", "tomorrow", "this afternoon"]
_WHEN_SHORT = ["early", "a day late", "on time", "overnight", "within a week", "before the weekend"]
_CLARITY = ["clear", "confusing", "short", "helpful", "vague", "detailed"]
_STATUS = ["closed", "open", "pending", "escalated", "resolved", "on hold"]
_POOLS = {
    "part": _PARTS, "part2": _PARTS, "when": _WHEN, "use": _USES, "person": _PEOPLE, "feature": _FEATURES,
    "feature2": _FEATURES, "freq": _FREQ, "when_short": _WHEN_SHORT, "clarity": _CLARITY, "genre": _GENRES,
    "aspect": _ASPECTS, "aspect2": _ASPECTS, "good": _ASPECT_GOOD, "bad": _ASPECT_BAD, "role": _ROLES,
    "issue": _ISSUES, "action": _ACTIONS, "result": _RESULTS, "request": _REQUESTS, "dept": _DEPTS,
    "status": _STATUS,
}

# Paraphrase synonyms: each word maps to alternatives of the same meaning.
_SYN_GROUPS = [
    ["bought", "purchased", "got"], ["great", "excellent", "superb"], ["solid", "sturdy", "robust"],
    ["nice", "lovely", "pleasant"], ["reliable", "dependable"], ["decent", "fine", "acceptable"],
    ["flimsy", "fragile", "weak"], ["cheap", "shoddy"], ["noisy", "loud"], ["awkward", "clumsy"],
    ["disappointing", "underwhelming"], ["poor", "bad"], ["wobbly", "unsteady"],
    ["worked", "performed", "functioned"], ["works", "runs", "functions"], ["broke", "failed", "snapped"],
    ["arrived", "came", "showed up"], ["packaging", "box", "wrapping"], ["honestly", "frankly", "truly"],
    ["money", "cash", "price"], ["recommend", "suggest"], ["anyone", "anybody"], ["needs", "wants", "requires"],
    ["replied", "answered", "responded"], ["sent", "shipped", "mailed"], ["new", "fresh"],
    ["uses", "relies on"], ["complaints", "gripes", "issues"], ["although", "though", "but"],
    ["much", "far"], ["better", "nicer"], ["started", "began"], ["rattle", "shake"], ["took", "needed"],
    ["instructions", "directions", "manual"], ["returned", "sent back"], ["replacement", "substitute"],
    ["marks", "points"], ["old", "previous"], ["directs", "helms"], ["restraint", "control"],
    ["detail", "nuance"], ["performance", "turn"], ["past", "history"], ["mistakes", "confuses"],
    ["tension", "suspense"], ["depth", "substance"], ["final", "last"], ["save", "rescue"],
    ["rare", "unusual"], ["trusts", "respects"], ["audience", "viewers"], ["chemistry", "rapport"],
    ["earns", "deserves"], ["hours", "hrs"], ["moments", "flashes"],
    ["forgive", "excuse"], ["middle", "central"], ["little", "small"], ["wastes", "squanders"],
    ["thanks", "thank you"], ["reaching out", "contacting us", "writing in"], ["sorry", "sad"],
    ["hear", "learn"], ["experience", "service"], ["want", "wish"], ["see", "notice"], ["within", "in"],
    ["please", "kindly"], ["finish", "close", "complete"], ["persists", "continues"],
    ["quote", "mention", "cite"], ["logged", "recorded", "filed"], ["colleague", "teammate"],
    ["nothing", "no action"], ["allow", "wait"], ["change", "update"],
    ["appear", "show up"], ["patience", "understanding"], ["team", "staff"], ["checked", "reviewed", "looked at"],
    ["questions", "queries"], ["still", "yet"], ["like new", "as new"], ["far", "so far"],
    ["film", "movie", "picture"], ["script", "screenplay"], ["score", "soundtrack", "music"],
    ["ending", "finale"], ["humour", "comedy"], ["daily", "everyday"], ["heavy", "intense"],
    ["much better", "a big improvement"], ["minutes", "mins"], ["confusing", "unclear"], ["helpful", "useful"],
]
_SYNONYMS: dict[str, list[str]] = {}
for _group in _SYN_GROUPS:
    for _word in _group:
        _SYNONYMS.setdefault(_word, []).extend(w for w in _group if w != _word)

# Words a near-duplicate edit may insert or substitute.
_EDIT_WORDS = [
    "really", "very", "quite", "just", "also", "even", "still", "actually", "definitely", "pretty",
    "totally", "again", "now", "today", "overall", "maybe", "always", "never", "simply", "truly",
    "kettle", "film", "order", "great", "bad", "new", "old", "big", "small", "fast", "slow", "cheap",
]

_SLOT = re.compile(r"\{(\w+)\}")


@dataclass(slots=True)
class DedupSet:
    """Rows plus ground truth, index-aligned with `rows`.

    `kind[i]` is "original", "exact", "near" or "paraphrase"; `source[i]` is the index of the row a
    copy or paraphrase was made from (-1 for originals); `group[i]` is the group id: a row and its
    exact / near copies share one, a paraphrase has its own. `edits[i]` counts a near copy's word edits.
    """

    rows: list[Record]
    kind: list[str]
    source: list[int]
    group: list[int]
    edits: list[int]


_NUMERIC = {"order", "ticket", "minutes", "year", "price", "days"}


def _fill(template: str, rng: random.Random, words: list[str]) -> str:
    """The template with its slots filled; the non-numeric slot values are appended to `words`."""

    def pick(match: re.Match[str]) -> str:
        slot = match.group(1)
        if slot in ("pos", "pos2"):
            value = rng.choice(_POS)
        elif slot == "neg":
            value = rng.choice(_NEG)
        elif slot in ("name", "name2"):
            value = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        elif slot in ("order", "ticket"):
            value = str(rng.randrange(10_000, 99_999))
        elif slot == "minutes":
            value = str(rng.randrange(5, 180))
        elif slot == "year":
            value = str(rng.randrange(1950, 2024))
        elif slot == "price":
            value = f"${rng.randrange(9, 300)}"
        elif slot == "days":
            value = rng.choice([f"{rng.randrange(2, 60)} days", f"{rng.randrange(2, 13)} weeks"])
        elif slot == "product":
            value = f"{rng.choice(_BRANDS)} {rng.choice(_PRODUCTS)}"
        else:
            value = rng.choice(_POOLS[slot])
        if slot not in _NUMERIC:
            words.append(value)
        return value

    return _SLOT.sub(pick, template)


class _Registry:
    """Rejects an original that shares its templates and all but two slot words with an earlier one.

    Numbers are ignored and word order too (slot words swapped between slots still read as a near
    copy): an accidental near copy like that would blur the ground truth. Rarer accidents remain
    (three short slot words apart, or one original inside a longer one).
    """

    def __init__(self) -> None:
        self.keys_: set[bytes] = set()

    def admit(self, templates: list[str], words: list[str]) -> bool:
        if len(words) < 3:
            return False
        head = "|".join(sorted(templates))
        keys = set()
        for i in range(len(words)):
            for j in range(i + 1, len(words)):
                masked = "|".join(sorted(w for k, w in enumerate(words) if k not in (i, j)))
                keys.add(hashlib.blake2b(f"{head}#{masked}".encode(), digest_size=12).digest())
        if keys & self.keys_:
            return False
        self.keys_ |= keys
        return True


def _original(rng: random.Random, registry: _Registry) -> list[str]:
    """Two or three sentences from one domain, 10 to 40 words in all, unlike any earlier original."""
    templates = rng.choice([_REVIEW, _CRITIC, _SUPPORT])
    while True:
        picks = rng.sample(templates, rng.choice([2, 2, 3]))
        words: list[str] = []
        sentences = [_fill(t, rng, words) for t in picks]
        if 10 <= sum(len(s.split()) for s in sentences) <= 40 and registry.admit(picks, words):
            return sentences


def _exact_variant(text: str, rng: random.Random) -> str:
    """Same normalised text: change case, punctuation, spacing or character width."""
    ops = rng.sample(["upper", "lower", "title", "punct", "space", "width", "exclaim"], 2)
    for op in ops:
        if op == "upper":
            text = text.upper()
        elif op == "lower":
            text = text.lower()
        elif op == "title":
            text = text.title()
        elif op == "punct":
            text = text.replace(".", "").replace(",", " ,").replace("'", "\u2019")
        elif op == "space":
            text = "  " + re.sub(" ", lambda m: rng.choice([" ", "  ", "\t", " \n"]), text) + " "
        elif op == "width":  # full-width Latin letters fold back under NFKC
            text = "".join(chr(ord(c) + 0xFEE0) if "a" <= c <= "z" and rng.random() < 0.3 else c for c in text)
        else:
            text = text.rstrip(".") + "!!"
    return text


def _near_variant(text: str, rng: random.Random) -> tuple[str, int]:
    """1-3 word edits, about one per ten words."""
    words = text.split()
    n_edits = rng.randint(1, max(1, min(3, len(words) // 10)))
    for _ in range(n_edits):
        op = rng.choice(["sub", "ins", "del"])
        pos = rng.randrange(len(words))
        if op == "sub":
            choices = [w for w in _EDIT_WORDS if w != words[pos].lower()]
            words[pos] = rng.choice(choices)
        elif op == "ins":
            words.insert(pos, rng.choice(_EDIT_WORDS))
        elif len(words) > 3:
            del words[pos]
        else:
            words.insert(pos, rng.choice(_EDIT_WORDS))
    return " ".join(words), n_edits


def _swap_words(sentence: str, rng: random.Random) -> str:
    """Replace words and two-word phrases that have synonyms (most of them)."""
    tokens = sentence.split(" ")
    out: list[str] = []
    i = 0
    while i < len(tokens):
        pair = " ".join(tokens[i:i + 2]).lower().rstrip(".,")
        word = tokens[i].lower().rstrip(".,")
        tail = tokens[i][len(tokens[i].rstrip(".,")):]
        if i + 1 < len(tokens) and pair in _SYNONYMS and rng.random() < 0.9:
            out.append(rng.choice(_SYNONYMS[pair]) + tokens[i + 1][len(tokens[i + 1].rstrip(".,")):])
            i += 2
            continue
        if word in _SYNONYMS and rng.random() < 0.9:
            out.append(rng.choice(_SYNONYMS[word]) + tail)
        else:
            out.append(tokens[i])
        i += 1
    return " ".join(out)


def _paraphrase(sentences: list[str], rng: random.Random) -> str:
    """Synonym swaps, clauses swapped around a comma, and the sentences in another order."""
    out = []
    for sentence in sentences:
        sentence = _swap_words(sentence, rng)
        body = sentence.rstrip(".")
        if ", " in body and rng.random() < 0.7:
            first, _, second = body.partition(", ")
            second = re.sub(r"^(but|and|so|which is|although|though|yet) ", "", second)
            body = f"{second[:1].upper()}{second[1:]}, and {first[:1].lower()}{first[1:]}"
        out.append(body + ".")
    if len(out) > 1:
        out = out[1:] + out[:1]
    return " ".join(out)


def _word_jaccard(a: str, b: str) -> float:
    x, y = set(re.findall(r"\w+", a.lower())), set(re.findall(r"\w+", b.lower()))
    return len(x & y) / max(1, len(x | y))


def make_dedup_set(
    n: int, seed: int = 0, *, exact_share: float = 0.08, near_share: float = 0.15, paraphrase_share: float = 0.05,
) -> DedupSet:
    """`n` shuffled rows: originals plus planted exact copies, near copies and paraphrases."""
    rng = random.Random(seed)
    n_exact, n_near, n_para = int(n * exact_share), int(n * near_share), int(n * paraphrase_share)
    n_orig = n - n_exact - n_near - n_para
    if n_orig < 1 or (n_exact + n_near + n_para and n_orig < 2):
        raise ValueError("too few rows for the requested shares")
    registry = _Registry()
    originals = [_original(rng, registry) for _ in range(n_orig)]
    texts = [" ".join(s) for s in originals]
    kind, source, edits = ["original"] * n_orig, [-1] * n_orig, [0] * n_orig
    # Each original gets at most one kind of copy, so recall can be measured per kind.
    order = list(range(n_orig))
    rng.shuffle(order)
    cut = n_orig * n_exact // max(1, n_exact + n_near)
    exact_sources, near_sources = order[:max(1, cut)], order[max(1, cut):] or order[:1]
    for _ in range(n_exact):
        i = rng.choice(exact_sources)
        texts.append(_exact_variant(texts[i], rng))
        kind.append("exact"), source.append(i), edits.append(0)
    # Near copies and paraphrases must differ from every earlier text once normalised, or they
    # would be exact copies of it (e.g. an edit that only swapped "great." for "great").
    seen = {normalize(t) for t in texts}
    for _ in range(n_near):
        while True:
            i = rng.choice(near_sources)
            text, k = _near_variant(texts[i], rng)
            if normalize(text) not in seen:
                break
        seen.add(normalize(text))
        texts.append(text)
        kind.append("near"), source.append(i), edits.append(k)
    # One paraphrase per source at most: two of the same source could be near copies of each other.
    para_sources = order[::-1]
    for _ in range(n_para):
        while True:  # a paraphrase must reword: at most 60% of its word set is shared with the source
            i = para_sources.pop()
            text = _paraphrase(originals[i], rng)
            if _word_jaccard(text, texts[i]) <= 0.6 and normalize(text) not in seen:
                break
        seen.add(normalize(text))
        texts.append(text)
        kind.append("paraphrase"), source.append(i), edits.append(0)
    group = [i if k in ("original", "paraphrase") else s for i, (k, s) in enumerate(zip(kind, source))]
    perm = list(range(len(texts)))
    rng.shuffle(perm)
    where = {old: new for new, old in enumerate(perm)}
    labels = ["positive", "negative"]
    # A paraphrase keeps its source's label, as a copy does.
    topic = [s if k == "paraphrase" else g for k, s, g in zip(kind, source, group)]
    rows = [Record({"text": texts[old]}, labels[topic[old] % 2], id=f"row{new}") for new, old in enumerate(perm)]
    return DedupSet(
        rows=rows,
        kind=[kind[old] for old in perm],
        source=[where[source[old]] if source[old] >= 0 else -1 for old in perm],
        group=[where[group[old]] for old in perm],
        edits=[edits[old] for old in perm],
    )

