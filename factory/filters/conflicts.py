"""conflicts: the same (or nearly the same) text generated for different labels.

The seed article saw one sentence produced for both `neutral` and `somewhat polite`; a classifier
trained on both copies learns noise. Rows are linked when their normalised texts are equal or their
embeddings are close, and only across different labels; each connected group is a conflict.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from itertools import combinations

import numpy as np

from factory.filters.base import Filter, FilterResult
from factory.filters.params import ConflictsParams
from factory.filters.probe import crossfit_proba, fit_proba
from factory.filters.similarity import BLOCK
from factory.graph import components
from factory.records import Record, Rejected
from factory.text import normalize

_TIE = 1e-6


class Conflicts(Filter):
    """Finds texts shared across labels and drops them, or keeps only the label a classifier supports."""

    type = "conflicts"
    Params = ConflictsParams
    params: ConflictsParams

    def apply(self, records: Sequence[Record]) -> FilterResult:
        labelled = [i for i, r in enumerate(records) if r.label is not None]
        groups, vectors = self._groups([records[i] for i in labelled])
        groups = [[labelled[i] for i in g] for g in groups]
        if vectors is None and groups and self.params.resolve == "classifier":
            vectors = self.context.embeddings().encode([records[i].text for i in labelled])
        row_vector = {row: vectors[k] for k, row in enumerate(labelled)} if vectors is not None else {}

        pairs: Counter[str] = Counter()
        for group in groups:
            for a, b in combinations(sorted({records[i].label for i in group}), 2):  # type: ignore[type-var]
                pairs[f"{a}|{b}"] += 1
        stats = {
            "groups": len(groups),
            "rows_in_conflict": sum(len(g) for g in groups),
            "confused_pairs": dict(sorted(pairs.items())),
        }

        details: dict[int, str] = {}
        if self.params.resolve == "drop_all":
            for group in groups:
                details.update(self._describe(records, group, row_vector))
        elif groups:
            proba, labels, source = self._proba(records, labelled, groups, vectors)
            stats["probe"] = source
            index = {label: k for k, label in enumerate(labels)}
            for group in groups:
                details.update(self._resolve(records, group, proba, index, row_vector))

        kept = [r for i, r in enumerate(records) if i not in details]
        dropped = [Rejected.from_record(records[i], self.type, "label_conflict", d) for i, d in sorted(details.items())]
        return FilterResult(kept, dropped, stats)

    # -- finding groups -------------------------------------------------------------------------

    def _groups(self, records: Sequence[Record]) -> tuple[list[list[int]], np.ndarray | None]:
        """Conflicting groups (row indices, input order, first-row order) and the embeddings if computed."""
        if not records:
            return [], None
        # Rows with the same normalised text form one node; its label set may already conflict.
        node_of: dict[str, int] = {}
        node_rows: list[list[int]] = []
        for i, record in enumerate(records):
            node = node_of.setdefault(normalize(record.text), len(node_of))
            if node == len(node_rows):
                node_rows.append([])
            node_rows[node].append(i)
        node_labels = [{records[i].label for i in rows} for rows in node_rows]
        vectors = None
        component = np.arange(len(node_rows))
        if self.params.threshold is not None:
            vectors = self.context.embeddings().encode([r.text for r in records])
            # One label id per node; -1 marks a node that already holds several labels (links to all).
            label_ids = {label: k for k, label in enumerate(sorted({r.label for r in records}))}  # type: ignore[type-var]
            node_label = np.array([label_ids[next(iter(s))] if len(s) == 1 else -1 for s in node_labels])
            node_vectors = vectors[[rows[0] for rows in node_rows]]
            component = _components(node_vectors, node_label, self.params.threshold)
        members: dict[int, list[int]] = defaultdict(list)
        for node, comp in enumerate(component):
            members[int(comp)].append(node)
        groups = []
        for nodes in members.values():
            if len(nodes) > 1 or len(node_labels[nodes[0]]) > 1:
                groups.append(sorted(i for n in nodes for i in node_rows[n]))
        return sorted(groups), vectors

    # -- resolving ------------------------------------------------------------------------------

    def _proba(self, records: Sequence[Record], labelled: list[int], groups: list[list[int]],
               vectors: np.ndarray) -> tuple[dict[int, np.ndarray], list[str], str]:
        """Label probabilities for every row in a group: probe on real_train, else cross-fitted."""
        context = self.context
        labels = list(context.labels) or sorted({records[i].label for i in labelled})  # type: ignore[type-var]
        real = [r for r in context.real_train if r.label in labels]
        in_groups = [i for g in groups for i in g]
        position = {row: k for k, row in enumerate(labelled)}
        if len({r.label for r in real}) >= 2:
            real_x = context.embeddings().encode([r.text for r in real])
            x = vectors[[position[i] for i in in_groups]]
            proba = fit_proba(real_x, [r.label for r in real], x, labels, context.seed)
            return dict(zip(in_groups, proba)), labels, "real_train"
        # No real classifier: out-of-fold on the synthetic rows, so no row scores its own label.
        proba = crossfit_proba(vectors, [records[i].label for i in labelled], labels, context.seed)
        return {i: proba[position[i]] for i in in_groups}, labels, "crossfit"

    def _resolve(self, records: Sequence[Record], group: list[int], proba: dict[int, np.ndarray],
                 index: dict[str, int], row_vector: dict[int, np.ndarray]) -> dict[int, str]:
        """Keep the rows of the label the group's mean probability favours; a tie keeps none."""
        group_labels = sorted({records[i].label for i in group})  # type: ignore[type-var]
        mean = np.mean([proba[i] for i in group], axis=0)
        score = {label: float(mean[index[label]]) if label in index else 0.0 for label in group_labels}
        ranked = sorted(group_labels, key=lambda label: -score[label])
        winner = ranked[0] if score[ranked[0]] - score[ranked[1]] > _TIE else None
        shown = ", ".join(f"p({label})={score[label]:.2f}" for label in group_labels)
        verdict = (f"the classifier favours '{winner}'" if winner is not None
                   else "the classifier cannot tell the labels apart")
        described = self._describe(records, group, row_vector)
        return {i: f"{described[i]}; {verdict} ({shown})" for i in group if records[i].label != winner}

    @staticmethod
    def _describe(records: Sequence[Record], group: list[int], row_vector: dict[int, np.ndarray]) -> dict[int, str]:
        """Per row: the row of another label it clashes with (same text, else the closest of 256)."""
        by_label: dict[str, list[int]] = defaultdict(list)
        first_of: dict[tuple[str, str | None], int] = {}  # (normalised text, label) -> first row
        norm = {i: normalize(records[i].text) for i in group}
        for i in group:
            by_label[records[i].label].append(i)  # type: ignore[index]
            first_of.setdefault((norm[i], records[i].label), i)
        tail = f"group of {len(group)} rows, labels: {', '.join(sorted(by_label))}"
        out: dict[int, str] = {}
        for label, rows in by_label.items():
            others = [j for other, members in by_label.items() if other != label for j in members[:256]][:256]
            sims = (np.stack([row_vector[i] for i in rows]) @ np.stack([row_vector[j] for j in others]).T
                    if row_vector else None)
            for k, i in enumerate(rows):
                same = [first_of[(norm[i], o)] for o in by_label if o != label and (norm[i], o) in first_of]
                if same or sims is None:
                    j, how = (same or others)[0], "same text as"
                else:
                    top = int(sims[k].argmax())
                    j, how = others[top], f"cosine {min(float(sims[k, top]), 1.0):.3f} with"
                out[i] = f"{how} row {records[j].id} labelled '{records[j].label}' ({tail})"
        return out


def _components(vectors: np.ndarray, label: np.ndarray, threshold: float) -> np.ndarray:
    """Connected components of the graph linking nodes with cosine >= threshold and different labels.

    Nodes are sorted by label so that same-label pairs, which can never conflict, are never
    multiplied (half the work for two labels). Each block's edges are reduced to a spanning forest
    before they are kept, so even thousands of near-identical rows keep O(n) edges per block.
    Component numbers are arbitrary: only which nodes share one matters.
    """
    n = len(vectors)
    order = np.argsort(label, kind="stable")  # -1 (several labels already) first: it links to every node
    x, lab = vectors[order], label[order]
    bounds = np.flatnonzero(np.diff(lab)) + 1
    heads: list[np.ndarray] = []
    tails: list[np.ndarray] = []
    for seg_start, seg_end in zip([0, *bounds], [*bounds, n]):
        mixed = lab[seg_start] < 0
        for s in range(seg_start, seg_end, BLOCK):
            xb = x[s : min(s + BLOCK, seg_end)]
            # A mixed node meets every later node; a single-label node only the later labels' nodes.
            for c in range(s if mixed else seg_end, n, BLOCK):
                link = (xb @ x[c : c + BLOCK].T) >= threshold
                if c == s:
                    link = np.triu(link, 1)
                a, b = np.nonzero(link)
                if len(a) == 0:
                    continue
                a, b = a + s, b + c
                if len(a) > 2 * BLOCK:
                    a, b = _forest(a, b)
                heads.append(a)
                tails.append(b)
    component = components(n, np.concatenate(heads), np.concatenate(tails)) if heads else np.arange(n)
    out = np.empty(n, dtype=np.int64)
    out[order] = component
    return out


def _forest(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Same connectivity with fewer edges: every node links to the first node of its component."""
    nodes, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
    first = components(len(nodes), inverse[: len(a)], inverse[len(a) :])  # the lowest node of each component
    keep = first != np.arange(len(nodes))
    return nodes[first[keep]], nodes[keep]
