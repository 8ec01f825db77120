"""What a rebuild takes from the last good build's rules: each stratum's runs, keyed by its input.

A stratum (the rules of one `cmp:order`) is run by the engine to its fixpoint: a sequence of
runs, each a rule and the lines it added that the store lacked. That sequence is a function of
the rule texts, the engine (this code and pyoxigraph) and the store's content under the keys
the stratum's rules read (what their patterns can match, see rule_analysis: a predicate, or
`type:` + a class) and under the keys its runs write (whether a derived line is new, and so
whether a rule must run again, depends on what the store already holds there). Nothing else
reaches a query: the rules read one default graph, and a rule whose reads cannot be told
(a variable predicate) reads every key.

So the engine keeps, per key, a digest of what the store holds under it: first the hash of
the loaded input's sorted distinct lines under that key, then, for each stratum that added
lines under it, a chain step with the stratum's key and its writes' digests (what it adds is
a function of those, so they stand for its lines and no derived line is hashed). A stratum
whose read keys and write keys have the digests they had in a kept entry would do exactly the
runs the entry records; they are replayed (counted, collected, loaded only if a later stratum
runs) instead of queried. A stratum that runs makes new digests for the keys it adds to, so
the strata that read those keys run too, even when its output turns out unchanged: telling
that would mean hashing every derived line on every build.

The loaded input's blank nodes are named afresh by every parse: their lines are digested in
canonical form (RDFC-1.0), or, past BLANK_LIMIT such lines, the memo is off for the build
(canonical labels of a large blank graph can cost more than the rules). Rules never make
blank nodes (the engine refuses them), so the strata's lines need no such care.

Entries are written only once the build's artifact is in place (a failed build leaves the last
good ones), one per stratum order, each checked on reading (its own digest); an entry that does
not read back, or belongs to other rules, engine or input, is not used.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pyoxigraph as ox

from service.kb.rule_analysis import RDF_TYPE_IRI, TYPE_KEY

_RDF_TYPE_NT = f"<{RDF_TYPE_IRI}>".encode()
_NT = ox.RdfFormat.N_TRIPLES
BLANK_LIMIT = 50_000  # loaded lines with a blank node; more and the memo stays off
PREFIX = "rules-"  # entry files: rules-<order>.memo in the build cache
ALL = "*"  # a rule that reads every key


def _key(predicate: bytes, rest: bytes) -> str:
    """The key a N-Triples line is read under: its predicate, or `type:` + the class for a
    typing statement (`rest`: what follows the predicate), as rule_analysis keys patterns."""
    if predicate == _RDF_TYPE_NT and rest.startswith(b"<"):
        return TYPE_KEY + rest[1 : rest.index(b">")].decode()
    return predicate[1:-1].decode()


def lines_by_key(
    lines: Iterable[bytes], blank: list[bytes] | None = None
) -> dict[str, list[bytes]]:
    """Lines (each one triple, without its newline) grouped under their _key; with `blank`, the
    lines with a blank node go there instead (rules never make one; the loaded input may)."""
    groups: dict[str, list[bytes]] = defaultdict(list)
    typed: dict[bytes, list[bytes]] = defaultdict(list)
    for line in lines:
        s, p, rest = line.split(b" ", 2)
        if blank is not None and (s[0] == 95 or rest[0] == 95):  # "_:" as subject or object
            blank.append(line)
        elif p == _RDF_TYPE_NT and rest.startswith(b"<"):
            typed[rest[1 : rest.index(b">")]].append(line)
        else:
            groups[p[1:-1].decode()].append(line)
    for cls, group in typed.items():
        groups[TYPE_KEY + cls.decode()] = group
    return groups


def keys_of(lines: Iterable[bytes]) -> set[str]:
    """The keys of some lines (each one's _key), worked out once per distinct predicate or
    typing object."""
    predicates: set[bytes] = set()
    typed: set[bytes] = set()
    for line in lines:
        _s, p, rest = line.split(b" ", 2)
        if p == _RDF_TYPE_NT:
            typed.add(rest)
        else:
            predicates.add(p)
    keys = {_key(p, b"") for p in predicates}
    keys.update(_key(_RDF_TYPE_NT, rest) for rest in typed)
    return keys


def _digest(lines: list[bytes]) -> str:
    # Sorted, so the digest is the content's whatever the parse order; a line given twice
    # counts twice (the same input gives the same digest, which is all a key needs).
    return hashlib.sha256(b"\n".join(sorted(lines))).hexdigest()


def _code() -> str:
    """The engine's identity: this module, the one that runs the rules and pyoxigraph's version."""
    digest = hashlib.sha256(metadata.version("pyoxigraph").encode())
    here = Path(__file__).parent
    for name in ("rule_memo.py", "reasoning.py", "rule_analysis.py"):
        digest.update((here / name).read_bytes())
    return digest.hexdigest()


@dataclass
class Entry:
    """One stratum's runs as the engine did them: (rule id, the new lines it loaded)."""

    key: str
    writes: dict[str, str]  # the digests of the keys its runs wrote, as they were before it
    added: list[str]  # the keys of its new lines
    runs: list[tuple[str, bytes]]
    per_rule: dict[str, int]
    rounds: int

    def to_bytes(self) -> bytes:
        payload = b"".join(lines for _rule, lines in self.runs)
        header = {
            "key": self.key,
            "writes": self.writes,
            "added": self.added,
            "runs": [[rule, len(lines)] for rule, lines in self.runs],
            "per_rule": self.per_rule,
            "rounds": self.rounds,
            "payload": hashlib.sha256(payload).hexdigest(),
        }
        return json.dumps(header, sort_keys=True).encode() + b"\n" + payload

    @classmethod
    def from_bytes(cls, data: bytes) -> Entry | None:
        try:
            end = data.index(b"\n")
            header = json.loads(data[:end])
            payload = memoryview(data)[end + 1 :]
            if hashlib.sha256(payload).hexdigest() != header["payload"]:
                return None
            runs, at = [], 0
            for rule, length in header["runs"]:
                runs.append((str(rule), bytes(payload[at : at + length])))
                at += length
            if at != len(payload):
                return None
            return cls(header["key"], header["writes"], header["added"], runs,
                       header["per_rule"], int(header["rounds"]))  # fmt: skip
        except (ValueError, KeyError, TypeError):
            return None


@dataclass
class RuleMemo:
    """The digests of what the store holds, per key, and the strata entries of one rules run."""

    directory: Path
    state: dict[str, str] = field(default_factory=dict)
    off: str | None = None  # why the memo is not used for this build, if it is not
    reused: list[int] = field(default_factory=list)  # the orders of the strata replayed
    unloaded: list[bytes] = field(default_factory=list)  # replayed lines not yet in the store
    _code: str = ""
    _fresh: dict[int, Entry] = field(default_factory=dict)  # to keep once the build is good

    def start(self, loaded: bytes) -> None:
        """The digests of the loaded input (N-Triples, one triple per line)."""
        self._code = _code()
        lines = loaded.split(b"\n")
        if lines and not lines[-1]:
            lines.pop()
        blank: list[bytes] = []
        groups = lines_by_key(lines, blank)
        del lines
        if len(blank) > BLANK_LIMIT:
            self.off = f"{len(blank)} input lines with blank nodes (more than {BLANK_LIMIT})"
            return
        if blank:
            dataset = ox.Dataset(ox.parse(b"\n".join(blank), format=_NT))
            dataset.canonicalize(ox.CanonicalizationAlgorithm.RDFC_1_0)
            for key, group in lines_by_key(f"{q.triple} .".encode() for q in dataset).items():
                groups.setdefault(key, []).extend(group)
        self.state = {k: _digest(group) for k, group in groups.items()}

    def stratum_key(
        self, rules: Sequence[tuple[str, str, frozenset[str] | None]], prefixes: dict[str, str]
    ) -> str:
        """The key of a stratum: its rules (iri, query, reads), the prefixes their queries are
        read with, and what the store holds under the keys they read."""
        reads: set[str] = set()
        for _iri, _query, rule_reads in rules:
            if rule_reads is None:
                reads = {ALL}
                break
            reads |= rule_reads
        if ALL in reads:
            keys = set(self.state)
        else:
            keys = {k for k in reads if k in self.state}
            if RDF_TYPE_IRI in reads:  # a pattern on rdf:type with a variable class
                keys |= {k for k in self.state if k.startswith(TYPE_KEY)}
        digest = hashlib.sha256(self._code.encode())
        digest.update(json.dumps(sorted(prefixes.items())).encode())
        for iri, query, rule_reads in rules:
            digest.update(json.dumps([iri, query, sorted(rule_reads or [ALL])]).encode())
        digest.update(json.dumps(sorted((k, self.state[k]) for k in keys)).encode())
        return digest.hexdigest()

    def lookup(self, order: int, key: str) -> Entry | None:
        """The kept entry of this stratum if it has this key and the keys it wrote hold what
        they held then; else None (and the stratum runs)."""
        if self.off is not None:
            return None
        try:
            entry = Entry.from_bytes((self.directory / f"{PREFIX}{order}.memo").read_bytes())
        except OSError:
            return None
        if entry is None or entry.key != key:
            return None
        if any(self.state.get(k, "") != v for k, v in entry.writes.items()):
            return None
        self.reused.append(order)
        return entry

    def advance(self, entry: Entry) -> None:
        """A stratum's new lines are in the store. What it added under a key is a function of
        the entry's key and the writes' digests (see the module's docstring), so those stand
        for the lines: no line is hashed."""
        token = hashlib.sha256(json.dumps([entry.key, entry.writes], sort_keys=True).encode())
        for k in entry.added:
            step = f"{self.state.get(k, '')} {token.hexdigest()} {k}"
            self.state[k] = hashlib.sha256(step.encode()).hexdigest()

    def keep(self, order: int, entry: Entry) -> None:
        if self.off is None:
            self._fresh[order] = entry

    def save(self) -> None:
        """Write the strata that ran (best effort: an entry that cannot be written only costs
        the next build that stratum's queries). Called once the artifact is in place."""
        for order, entry in self._fresh.items():
            path = self.directory / f"{PREFIX}{order}.memo"
            tmp = path.with_suffix(".tmp")
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                tmp.write_bytes(entry.to_bytes())
                tmp.replace(path)
            except OSError:
                tmp.unlink(missing_ok=True)
        self._fresh.clear()
