"""The trap guard's rules: tokenising, normalising and comparing two questions (used by `verify.TrapGuard`).

Two questions are lined up as bags of normalised words: lower case, contractions expanded, UK/US spelling
and light stemming folded, number words as digits, a few synonyms folded (kid -> child, kilo -> kg), and
one-letter typos paired off. What is left on each side are the *differences*; a candidate is rejected when

- ``number``: a number appears on one side only;
- ``negation``: the two sides carry a different count of negations (not, no, never, without, except...),
  or one side has a word and the other its negated form (safe / unsafe);
- ``entity``: a capitalised (not sentence-initial) word or an acronym appears on one side only, or both
  sides have words the vocabulary does not know (two drug or product names);
- ``scope``: only / all / every / both / either / whole / entire / per on one side only;
- ``contrast``: one side has a word and the other a different member of the same closed set: weekdays and
  relative days, months, seasons, parts of the day, time units, frequencies, ordinals, measurement units,
  currencies, people (adult / child, I / contractor);
- ``antonym``: one side has a word and the other its opposite (open / closed, over / under, include /
  exclude, more / less, before / after, ...);
- ``direction``: a word both sides share follows a different direction word ("from my Premium Bonds" /
  "into Premium Bonds");
- ``person``: a person (child, landlord, student, ...) is named on one side only;
- ``possessor``: whose thing it is changes ("my password" / "my colleague's password"; a bare "my" is
  taken as implied);
- ``word_order``: the same words in another order ("from savings to current" / "from current to savings");
- ``slot_swap``: the same question with short spans replaced, added or dropped (words that only moved do
  not count; the unchanged words at least 40 % of it): the shape of every entity, number and scope trap.
  Synonym swaps ("store" / "shop") are rejected too: a lost hit costs one backend call, a wrong hit a
  wrong answer.

The word lists are general English written for this purpose, not lists of the audit pairs' words (see
`workbench.cache.audit` for how they were checked on held-out pairs).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

__all__ = ["Tok", "compare", "tokenize"]

_TOKEN = re.compile(r"[£$€¥%]|\d+(?:[.,:/]\d+)*|[^\W\d_]+(?:['’][^\W\d_]+)?", re.UNICODE)
_CONTRACTIONS: dict[str, tuple[str, ...]] = {
    "can't": ("can", "not"),
    "cannot": ("can", "not"),
    "won't": ("will", "not"),
    "shan't": ("shall", "not"),
    "ain't": ("is", "not"),
    "i'm": ("i", "am"),
    "let's": ("let", "us"),
}
_SUFFIXES = {"'re": "are", "'ve": "have", "'ll": "will", "'d": "would", "'m": "am"}
# 's after these is "is", not a possessive
_IS_BEFORE_S = frozenset("it what where who how that there here he she this".split())


def _w(*groups: str) -> frozenset[str]:
    return frozenset(w for g in groups for w in g.split())


_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        "zero _ two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen twenty".split()
    )
    if w != "_"
} | {
    "thirty": "30",
    "forty": "40",
    "fifty": "50",
    "sixty": "60",
    "seventy": "70",
    "eighty": "80",
    "ninety": "90",
    "hundred": "100",
    "thousand": "1000",
    "million": "1000000",
    "billion": "1000000000",
}
# Folded before comparing: spellings, short forms and plain synonyms of words the rules below look at.
_FOLD = {
    "kid": "child",
    "children": "child",
    "kiddie": "child",
    "people": "person",
    "men": "man",
    "women": "woman",
    "mum": "mother",
    "mom": "mother",
    "mommy": "mother",
    "dad": "father",
    "daddy": "father",
    "teenager": "teen",
    "kilo": "kg",
    "kilogram": "kg",
    "kilos": "kg",
    "gram": "g",
    "litre": "l",
    "liter": "l",
    "millilitre": "ml",
    "milliliter": "ml",
    "kilometre": "km",
    "kilometer": "km",
    "metre": "m",
    "meter": "m",
    "percent": "%",
    "per_cent": "%",
    "pound": "£",
    "quid": "£",
    "gbp": "£",
    "dollar": "$",
    "usd": "$",
    "buck": "$",
    "euro": "€",
    "eur": "€",
    "yen": "¥",
    "annual": "yearly",
    "annually": "yearly",
    "tonight": "tonight",
    "o'clock": "",
}
_NEGATIONS = _w("not no never none nothing nobody nowhere neither nor without except excluding unless non")
_SCOPE = _w("only all every both either whole entire per")
_CONTRAST_SETS: tuple[frozenset[str], ...] = (
    _w(
        "monday tuesday wednesday thursday friday saturday sunday weekday weekend today tomorrow",
        "yesterday tonight",
    ),
    _w("january february march april may june july august september october november december"),
    _w("spring summer autumn fall winter christmas easter"),
    _w("morning afternoon evening night noon midnight"),
    _w("am pm"),
    _w("second minute hour day week fortnight month year decade century"),
    _w("hourly daily nightly weekly fortnightly monthly quarterly yearly"),
    _w("first second third fourth fifth last next previous final"),
    _w("kg g mg mcg lb oz stone tonne ton"),
    _w("km m cm mm mile foot feet inch yard"),
    _w("l ml pint gallon cup tablespoon teaspoon"),
    _w("celsius fahrenheit kelvin"),
    _w("£ $ € ¥ pence penny cent"),
    _w("gb mb kb tb"),
    _w(
        "he him she her they them adult child baby infant toddler teen student pupil senior pensioner",
        "staff employee employer worker",
        "contractor freelancer colleague manager boss customer member guest visitor partner spouse husband",
        "wife son daughter parent mother father brother sister friend man woman boy girl patient doctor",
        "nurse tenant landlord owner driver passenger dog cat pet puppy kitten user admin",
    ),
)
_ANTONYMS: tuple[tuple[str, str], ...] = tuple(
    (a, b)
    for line in (
        "open:close open:closed open:shut on:off in:out up:down enable:disable enabled:disabled",
        "allow:ban allow:forbid allow:prohibit allow:block allowed:banned allowed:forbidden",
        "allowed:prohibited permitted:prohibited permitted:banned include:exclude included:excluded",
        "eat:avoid safe:unsafe safe:dangerous legal:illegal lawful:unlawful add:remove add:delete",
        "start:stop start:end start:finish begin:end keep:cancel keep:remove keep:delete buy:sell",
        "import:export upload:download send:receive accept:reject accept:decline accept:refuse",
        "approve:reject approve:deny pay:refund win:lose won:lost pass:fail true:false right:wrong",
        "correct:incorrect possible:impossible free:paid cheap:expensive increase:decrease",
        "increase:reduce raise:lower rise:fall gain:lose join:leave join:quit arrive:depart",
        "arrival:departure entry:exit entrance:exit inbound:outbound incoming:outgoing",
        "public:private internal:external domestic:international local:international local:foreign",
        "hot:cold warm:cold warm:cool wet:dry full:empty full:part full:partial new:old new:used",
        "young:old heavy:light fast:slow easy:hard easy:difficult simple:complex good:bad",
        "positive:negative min:max minimum:maximum lock:unlock subscribe:unsubscribe",
        "connect:disconnect install:uninstall encrypt:decrypt mute:unmute hide:show",
        "visible:invisible required:optional mandatory:optional mandatory:voluntary improve:damage",
        "improve:worsen improve:harm help:hurt help:harm fix:break working:broken working:faulty",
        "more:less more:fewer most:least better:worse best:worst bigger:smaller larger:smaller",
        "higher:lower longer:shorter earlier:later older:younger faster:slower cheaper:dearer",
        "cheaper:expensive above:below over:under before:after top:bottom front:back left:right",
        "north:south east:west male:female man:woman boy:girl husband:wife mother:father",
        "son:daughter brother:sister adult:child buyer:seller landlord:tenant employer:employee",
        "debit:credit deposit:withdraw deposit:withdrawal income:expense profit:loss online:offline",
        "with:without singular:plural single:multiple single:double some:all any:all",
    )
    for pair in line.split()
    for a, b in [pair.split(":")]
)
# Poles of one scale: any word of one pole against any word of the other is an opposite.
_POLES: tuple[tuple[frozenset[str], frozenset[str]], ...] = (
    (
        _w("increase raise more higher bigger larger up grow boost extend top higher greater expand"),
        _w("decrease reduce less lower smaller down shrink cut shorten fewer smaller lesser lower"),
    ),
    (
        _w("good great excellent outstanding best better top safe legal lawful legally allowed permitted"),
        _w("bad poor inadequate worst worse failing unsafe illegal unlawful illegally prohibited banned"),
    ),
    (
        _w("grant give allow enable activate approve add assign permit"),
        _w("revoke remove deny disable deactivate withdraw take block forbid"),
    ),
)
_OPPOSITE: dict[str, frozenset[str]] = {}
for _a, _b in _ANTONYMS + tuple((x, y) for up, down in _POLES for x in up for y in down if x != y):
    _OPPOSITE[_a] = _OPPOSITE.get(_a, frozenset()) | {_b}
    _OPPOSITE[_b] = _OPPOSITE.get(_b, frozenset()) | {_a}
_NEGATING_PREFIXES = ("un", "in", "im", "il", "ir", "dis", "non", "mis")
_POSSESSIVES = _w("my his her their our")
# Words whose insertion or loss never changes what is asked (greetings, hedges, politeness, glue).
_FILLER = _w(
    "please pls kindly can could would will you tell me i a an the do does did is are was be just",
    "exactly actually really quickly hi hello hey thanks thank so ok okay there here what how er erm um",
    "hmm know need want like to of for it that this wondering quick question usually generally",
    "typically normally ever currently still any anyway also too my your much many cheers uh well sorry",
    "ok okay at on in by about during explain describe define show give say",
)


def _stem(word: str) -> str:
    """UK/US spelling and a light suffix strip, applied to both sides (merges are then harmless)."""
    if word in _FOLD:
        return _FOLD[word]
    w = word
    if len(w) >= 5:
        if w.endswith("tre"):
            w = w[:-3] + "ter"
        elif w.endswith("our") and len(w) >= 6:
            w = w[:-3] + "or"
        elif w.endswith(("ise", "yse", "ised", "ysed", "ising", "ysing")) and len(w) >= 6:
            w = re.sub(r"[iy]s(e|ed|ing)$", r"iz\1", w)
        elif w.endswith("ogue"):
            w = w[:-2]
    if len(w) > 5 and w.endswith("ing"):
        w = w[:-3]
    elif len(w) > 4 and w.endswith("ed") and not w.endswith("eed"):
        w = w[:-2]
    elif len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "aeiouls":  # runn -> run, stopp -> stop
        w = w[:-1]
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]
    return _FOLD.get(w, w)


_FILLER_NORM = _FILLER | {_stem(w) for w in _FILLER}
_PEOPLE = _CONTRAST_SETS[-1]
_PEOPLE_NOUNS = _PEOPLE - _w("he him she her they them")
_DIRECTIONS = _w("from to into onto towards toward out off")


@dataclass(frozen=True, slots=True)
class Tok:
    norm: str  # what is compared: folded, stemmed, number words as digits
    low: str  # lower case as written (after contraction expansion)
    capital: bool  # capitalised mid-sentence or an acronym
    known: bool  # an ordinary word (the vocabulary knows it), a number or a symbol


def tokenize(text: str, known_word: Callable[[str], bool]) -> tuple[Tok, ...]:
    out: list[Tok] = []
    for m in _TOKEN.finditer(text):
        raw = m.group(0).replace("’", "'")
        low = raw.lower()
        before = text[: m.start()].rstrip()
        sentence_start = not before or before[-1] in ".!?\n:;,\"'(" or out == []
        parts: tuple[str, ...]
        if low in _CONTRACTIONS:
            parts = _CONTRACTIONS[low]
        elif low.endswith("n't"):
            parts = (low[:-3], "not")
        elif low.endswith("'s"):
            head = low[:-2]
            parts = (head, "is") if head in _IS_BEFORE_S else (head, "'s")
        else:
            suffix = next((s for s in _SUFFIXES if low.endswith(s)), None)
            parts = (low[: -len(suffix)], _SUFFIXES[suffix]) if suffix else (low,)
        for j, part in enumerate(parts):
            if not part:
                continue
            if part.isdigit() or not part.isalpha():
                norm = part
                capital, known = False, True
            else:
                norm = _NUMBER_WORDS.get(part) or _stem(part)
                head = raw[: len(part)] if j == 0 else part
                capital = (
                    j == 0
                    and part not in ("i", "ok")
                    and ((head[:1].isupper() and not sentence_start) or (len(head) >= 2 and head.isupper()))
                )
                known = len(part) <= 2 or known_word(part) or known_word(norm) or part in _NUMBER_WORDS
            if norm:
                out.append(Tok(norm, part, capital, known))
    return tuple(out)


def _one_edit(a: str, b: str) -> bool:
    """At most one insertion, deletion, substitution or adjacent swap between a and b."""
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    i = 0
    while i < min(la, lb) and a[i] == b[i]:
        i += 1
    if la == lb:
        if a[i + 1 :] == b[i + 1 :]:
            return True
        return i + 1 < la and a[i] == b[i + 1] and a[i + 1] == b[i] and a[i + 2 :] == b[i + 2 :]
    return a[i + 1 :] == b[i:] if la > lb else a[i:] == b[i + 1 :]


def _negations(toks: Sequence[Tok]) -> int:
    return sum(1 for t in toks if t.low in _NEGATIONS)


def _possessors(toks: Sequence[Tok]) -> frozenset[str]:
    out: set[str] = set()
    for i, t in enumerate(toks):
        if t.low in _POSSESSIVES and t.low != "my":
            out.add(t.low)
        elif t.low == "'s" and i > 0 and (toks[i - 1].capital or toks[i - 1].norm in _PEOPLE):
            out.add(toks[i - 1].norm + "'s")
    return frozenset(out)


def _negated(x: str, y: str) -> bool:
    return any(x.startswith(p) and len(x) - len(p) >= 3 and x[len(p) :] == y for p in _NEGATING_PREFIXES)


def compare(
    qa: Sequence[Tok], cb: Sequence[Tok], *, slot_swap: bool = True, max_slot: int = 3
) -> tuple[str, str] | None:
    """(reason, detail) when the two token sequences may want different answers, else None."""
    if _negations(qa) != _negations(cb):
        return "negation", f"{_negations(qa)} vs {_negations(cb)} negations"
    a = [t.norm for t in qa]
    b = [t.norm for t in cb]
    only_a, only_b = Counter(a) - Counter(b), Counter(b) - Counter(a)
    # Pair off one-letter typos ("adress" / "address"), unless both are real words ("debt" / "debit").
    info = {t.norm: t for t in (*qa, *cb)}
    rename: dict[str, str] = {}
    for wa in [w for w in only_a if w.isalpha() and len(w) >= 4]:
        for wb in only_b:
            if (
                only_b[wb] > 0
                and wb.isalpha()
                and len(wb) >= 4
                and _one_edit(wa, wb)
                and not (info[wa].known and info[wb].known)
            ):
                rename[wb] = wa
                only_a[wa] -= 1
                only_b[wb] -= 1
                break
    da = {w for w, n in only_a.items() if n > 0}
    db = {w for w, n in only_b.items() if n > 0}
    if not da and not db:
        ca = [w for w in a if w not in _FILLER_NORM]
        cb2 = [rename.get(w, w) for w in b if rename.get(w, w) not in _FILLER_NORM]
        # A clause moved to the front is a rotation ("To open an account, what do I need?"); anything
        # else reorders the roles ("from savings to current" / "from current to savings").
        if ca != cb2 and not any(cb2 == ca[k:] + ca[:k] for k in range(1, len(ca))):
            return "word_order", "same words, other order"
        return None
    for w in sorted(da ^ db):
        if any(c.isdigit() for c in w):
            return "number", w
    for w in sorted(da | db):
        t = info[w]
        if t.capital:
            return "entity", t.low
        if t.low in _SCOPE or w in _SCOPE:
            return "scope", t.low
    unknown_a = sorted(w for w in da if not info[w].known)
    unknown_b = sorted(w for w in db if not info[w].known)
    if unknown_a and unknown_b:
        return "entity", f"{unknown_a[0]}/{unknown_b[0]}"
    for s in _CONTRAST_SETS:
        xa = {w for w in da if w in s or info[w].low in s}
        xb = {w for w in db if w in s or info[w].low in s}
        if xa and xb:
            return "contrast", f"{min(xa)}/{min(xb)}"
    for wa in da:
        la = info[wa].low
        opp = _OPPOSITE.get(la, frozenset()) | _OPPOSITE.get(wa, frozenset())
        for wb in db:
            lb = info[wb].low
            if lb in opp or wb in opp:
                return "antonym", f"{la}/{lb}"
            if _negated(la, lb) or _negated(lb, la):
                return "negation", f"{la}/{lb}"
    ents_a = [t.norm for t in qa if t.capital]
    ents_b = [t.norm for t in cb if t.capital]
    shared = set(ents_a) & set(ents_b)
    order_a = list(dict.fromkeys(e for e in ents_a if e in shared))
    order_b = list(dict.fromkeys(e for e in ents_b if e in shared))
    if order_a != order_b:  # the same names in other roles ("from A to B" / "B over to A")
        return "entity_order", f"{' '.join(order_a)}/{' '.join(order_b)}"
    moved = _direction_swap(qa, cb)
    if moved:
        return "direction", moved
    for w in sorted(da ^ db):
        if info[w].low in _PEOPLE_NOUNS or w in _PEOPLE_NOUNS:
            return "person", info[w].low
    if _possessors(qa) != _possessors(cb):
        return "possessor", f"{sorted(_possessors(qa))}/{sorted(_possessors(cb))}"
    if slot_swap:
        swap = _slot_swap(a, [rename.get(w, w) for w in b], max_slot)
        if swap:
            return "slot_swap", swap
    return None


def _objects(toks: Sequence[Tok]) -> dict[str, str]:
    """content word -> the direction word before it (from / to / into ...), skipping fillers between."""
    out: dict[str, str] = {}
    pending = ""
    for t in toks:
        if t.low in _DIRECTIONS:
            pending = t.low
        elif t.norm in _FILLER_NORM:
            continue
        else:
            if pending:
                out.setdefault(t.norm, pending)
            pending = ""
    return out


def _direction_swap(qa: Sequence[Tok], cb: Sequence[Tok]) -> str:
    """'x: from/into' when a word both sides share is the object of a different direction word."""
    oa, ob = _objects(qa), _objects(cb)
    for w in sorted(set(oa) & set(ob)):
        if oa[w] != ob[w] and {oa[w], ob[w]} != {"to", "into"} and {oa[w], ob[w]} != {"to", "onto"}:
            return f"{w}: {oa[w]}/{ob[w]}"
    return ""


def _slot_swap(a: list[str], b: list[str], max_slot: int) -> str:
    """'x/y ...' when a and b are one question with short spans changed: every changed span (fillers
    aside) is at most `max_slot` words on each side, and the unchanged words are at least 40 % of the
    longer question. A rewording changes long spans; a swap changes the slots (what, whose, which one)."""
    a = [w for w in a if w not in _FILLER_NORM]
    b = [w for w in b if w not in _FILLER_NORM]
    sm = SequenceMatcher(a=a, b=b, autojunk=False)
    changes = [op for op in sm.get_opcodes() if op[0] != "equal"]
    if not changes:
        return ""
    spans = [(a[i1:i2], b[j1:j2]) for _, i1, i2, j1, j2 in changes]
    # a word that only moved ("a Python list" / "a list in Python") is no change of slot
    removed = Counter(w for x, _ in spans for w in x)
    added = Counter(w for _, y in spans for w in y)
    moved = removed & added
    spans = [([w for w in x if w not in moved], [w for w in y if w not in moved]) for x, y in spans]
    spans = [(x, y) for x, y in spans if x or y]
    # A content word added on one side counts too: it narrows the question ("joint account", "extended
    # warranty"); a rewording that only adds a verb ("Why does the sky *look* blue?") is lost with them.
    if not spans:
        return ""
    if any(max(len(x), len(y)) > max_slot for x, y in spans):
        return ""
    same = len(a) - sum(len(x) for x, _ in spans)
    if same < 1 or same < 0.4 * max(len(a), len(b)):
        return ""
    return ", ".join(f"{' '.join(x) or '-'}/{' '.join(y) or '-'}" for x, y in spans)
