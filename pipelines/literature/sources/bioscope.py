"""BioScope (Vincze et al. 2008): biomedical sentences with speculation and negation cues and their scopes.

The XML nests Annotation / DocumentSet / Document(type) / DocID(type) and DocumentPart(type) / sentence(id).
A sentence mixes text with nested <xcope id="X1.6.2"> scopes and <cue type="speculation|negation"
ref="X1.6.2"> cues. A cue's ref names the scope it opens; several cue elements can share one ref
("either ... or"), a cue can sit outside its own scope (13 in the two real files) and a few scopes are
named by no cue (4 in the full papers).

`read_bioscope` gives one record per sentence: its text (every text node in order, unchanged, so that
the offsets hold), whether it is speculative (it has a speculation cue: CoNLL-2010 task 1's "uncertain"),
and the cue and scope spans as character offsets into that text. The files are streamed with iterparse,
one sentence in memory at a time. Bad input raises LabelledDataError naming the file and the sentence.
"""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from components.io import atomic_write
from pipelines.literature.sources.labelled import LabelledDataError, data_files, split_name

CUE_KINDS = ("speculation", "negation")
HEDGE_LABELS = ("certain", "uncertain")  # CoNLL-2010 task 1: a sentence with a speculation cue is uncertain


@dataclass
class Cue:
    kind: str  # speculation / negation
    start: int  # text[start:end] is the cue word(s)
    end: int
    scope_id: str  # the scope the cue opens (its ref)


@dataclass
class Scope:
    scope_id: str
    start: int  # text[start:end] is the scope, the cue usually inside it
    end: int
    kind: str | None  # the kind of the cue(s) naming it; None when no cue does


@dataclass
class HedgeSentence:
    text: str
    label: str  # uncertain / certain
    speculative: bool  # has a speculation cue
    negated: bool  # has a negation cue
    sentence_id: str  # "S1.6", unique within its file
    doc_id: str | None  # PMID for the abstracts, BMC or PMC id for the full papers
    doc_type: str | None  # Biological_abstract / Biological_full_article
    part: str | None  # Title, AbstractText, SectionTitle, Text, FigureLegend, ...
    split: str  # the file's stem: abstracts, full_papers
    cues: list[Cue] = field(default_factory=list)
    scopes: list[Scope] = field(default_factory=list)  # in the order they open


def hedge_sentence(text: str, cues: list[Cue], **fields) -> HedgeSentence:
    """A sentence with its label and flags derived from its cues (speculative: a speculation cue)."""
    speculative = any(c.kind == "speculation" for c in cues)
    negated = any(c.kind == "negation" for c in cues)
    return HedgeSentence(
        text=text, label=HEDGE_LABELS[speculative], speculative=speculative, negated=negated, cues=cues, **fields
    )


def _sentence(elem: ET.Element, where: str) -> tuple[str, list[Cue], list[Scope]]:
    """The sentence's text and its cue and scope spans, walking the mixed content in document order."""
    pieces: list[str] = []
    cues: list[Cue] = []
    scopes: list[Scope] = []
    position = 0

    def add(text: str | None) -> None:
        nonlocal position
        if text:
            pieces.append(text)
            position += len(text)

    def walk(node: ET.Element) -> None:
        add(node.text)
        for child in node:
            start = position
            if child.tag == "xcope":
                if not child.get("id"):
                    raise LabelledDataError(f"{where}: an xcope without an id")
                slot = len(scopes)
                scopes.append(Scope(child.get("id"), start, start, None))  # placeholder: keeps opening order
                walk(child)
                scopes[slot].end = position
            elif child.tag == "cue":
                kind, ref = child.get("type"), child.get("ref")
                if kind not in CUE_KINDS:
                    raise LabelledDataError(f"{where}: cue type {kind!r} (expected speculation or negation)")
                if not ref:
                    raise LabelledDataError(f"{where}: a {kind} cue without a ref to its scope")
                walk(child)
                if position == start:
                    raise LabelledDataError(f"{where}: an empty {kind} cue")
                cues.append(Cue(kind, start, position, ref))
            else:
                raise LabelledDataError(f"{where}: unexpected element <{child.tag}> in a sentence")
            add(child.tail)

    walk(elem)
    ids = [s.scope_id for s in scopes]
    if len(ids) != len(set(ids)):
        raise LabelledDataError(f"{where}: a scope id appears twice")
    by_id = {s.scope_id: s for s in scopes}
    for cue in cues:
        if cue.scope_id not in by_id:
            raise LabelledDataError(f"{where}: cue {cue.kind!r} refers to scope {cue.scope_id!r}, not in the sentence")
        by_id[cue.scope_id].kind = by_id[cue.scope_id].kind or cue.kind
    return "".join(pieces), cues, scopes


def read_bioscope(path: Path) -> list[HedgeSentence]:
    """Sentences of BioScope XML files (a file or a folder of *.xml), in file order."""
    records = []
    for file in data_files(path, (".xml",), "BioScope XML"):
        split = split_name(file)
        doc_id = doc_type = part = None
        seen: set[str] = set()
        try:
            # the DOCTYPE names BioScope.dtd; expat does not fetch external DTDs, and none is needed
            for event, elem in ET.iterparse(file, events=("start", "end")):
                if event == "start":
                    if elem.tag == "Document":
                        doc_id, doc_type = None, elem.get("type")
                    elif elem.tag == "DocumentPart":
                        part = elem.get("type")
                    continue
                if elem.tag == "DocID":
                    doc_id = (elem.text or "").strip() or None
                elif elem.tag == "sentence":
                    sentence_id = elem.get("id")
                    where = f"{file}: document {doc_id}, sentence {sentence_id}"
                    if not sentence_id:
                        raise LabelledDataError(f"{where}: a sentence without an id")
                    if sentence_id in seen:
                        raise LabelledDataError(f"{where}: sentence id appears twice in the file")
                    seen.add(sentence_id)
                    text, cues, scopes = _sentence(elem, where)
                    if not text.strip():
                        raise LabelledDataError(f"{where}: empty text")
                    records.append(
                        hedge_sentence(
                            text=text,
                            sentence_id=sentence_id,
                            doc_id=doc_id,
                            doc_type=doc_type,
                            part=part,
                            split=split,
                            cues=cues,
                            scopes=scopes,
                        )
                    )
                    elem.clear()  # constant memory: the sentence is read
                elif elem.tag == "Document":
                    elem.clear()
        except ET.ParseError as err:
            line, column = err.position
            raise LabelledDataError(f"{file}:{line}: malformed XML at column {column}: {err}") from None
    return records


# ---- demo generator --------------------------------------------------------------------------------
# A sentence is a list of pieces: text, ("scope", [pieces]) or ("cue", kind, text); a cue refers to the
# scope it sits in. Entities (&lt; &apos;) appear as in the real abstracts.

_GENES = ["NF-kB", "IL-2", "Oct-2", "c-fos", "STAT3", "GATA-1"]
_CELLS = ["Jurkat T cells", "U937 cells", "human monocytes", "B cells"]


def _demo_sentence(rng: random.Random) -> list:
    gene, other, cells = rng.choice(_GENES), rng.choice(_GENES), rng.choice(_CELLS)
    shapes = [
        [f"{gene} expression was measured in {cells} (p < 0.05)."],
        [
            "These results ",
            (
                "scope",
                [
                    ("cue", "speculation", "suggest that"),
                    f" {gene} ",
                    ("scope", [("cue", "speculation", "may"), f" regulate {other}"]),
                ],
            ),
            ".",
        ],
        [
            "We found ",
            ("scope", [("cue", "negation", "no"), f" binding of {gene} to the 3' enhancer"]),
            f" in {cells}.",
        ],
        [
            "It is ",
            (
                "scope",
                [
                    ("cue", "speculation", "unclear"),
                    f" whether {gene} is ",
                    ("scope", [("cue", "negation", "not"), " required"]),
                ],
            ),
            ".",
        ],
        [
            f"{gene} ",
            (
                "scope",
                [
                    ("cue", "speculation", "either"),
                    f" activates {other} ",
                    ("cue", "speculation", "or"),
                    " represses it",
                ],
            ),
            ".",
        ],
    ]
    return rng.choice(shapes)


def _render(pieces: list, sentence_no: str) -> tuple[str, str, list[Cue], list[Scope]]:
    """(XML, text, cues, scopes) of one demo sentence; scope ids follow BioScope's X<doc>.<sent>.<n>."""
    xml, text, cues, scopes = [], [], [], []
    counter = [0]

    def emit(items: list, scope: str | None) -> None:
        for item in items:
            start = sum(map(len, text))
            if isinstance(item, str):
                xml.append(escape(item, {"'": "&apos;"}))
                text.append(item)
            elif item[0] == "cue":
                xml.append(f"<cue type={quoteattr(item[1])} ref={quoteattr(scope)}>{escape(item[2])}</cue>")
                text.append(item[2])
                cues.append(Cue(item[1], start, start + len(item[2]), scope))
            else:
                counter[0] += 1
                scope_id = f"X{sentence_no}.{counter[0]}"
                slot = len(scopes)
                scopes.append(Scope(scope_id, start, start, None))
                xml.append(f"<xcope id={quoteattr(scope_id)}>")
                emit(item[1], scope_id)
                xml.append("</xcope>")
                scopes[slot].end = sum(map(len, text))
                scopes[slot].kind = next(c.kind for c in cues if c.scope_id == scope_id)

    emit(pieces, None)
    return "".join(xml), "".join(text), cues, scopes


def write_demo_bioscope(
    path: Path,
    n_docs: int = 6,  # about 30 sentences, a third of them speculative (the real share is 18 %)
    seed: int = 0,  # the same file every run
) -> list[HedgeSentence]:
    """Abstracts in BioScope's XML (a title and 3-5 sentences each); return the records `read_bioscope` gives."""
    rng, path = random.Random(seed), Path(path)
    split, records = split_name(path), []
    out = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<!DOCTYPE Annotation PUBLIC "-//BIOSCOPE//DTD  SCOPE ANNOTATION 1.0//EN" "BioScope.dtd">',
        '<Annotation created="23/6/2008"  creator="XMLconverter">',
        "\t<DocumentSet>",
    ]
    for d in range(1, n_docs + 1):
        doc_id = str(91_000_000 + d * 131)
        out += ['\t\t<Document type="Biological_abstract">', f'\t\t\t<DocID type="PMID">{doc_id}</DocID>']
        title = [f"Regulation of {rng.choice(_GENES)} in {rng.choice(_CELLS)}."]
        parts = [("Title", [title]), ("AbstractText", [_demo_sentence(rng) for _ in range(rng.randint(3, 5))])]
        number = 0
        for part, sentences in parts:
            out.append(f'\t\t\t\t<DocumentPart type="{part}">')
            for pieces in sentences:
                number += 1
                sentence_id = f"S{d}.{number}"
                xml, text, cues, scopes = _render(pieces, f"{d}.{number}")
                out.append(f'\t\t\t\t\t<sentence id="{sentence_id}">{xml}</sentence>')
                records.append(
                    hedge_sentence(
                        text=text,
                        sentence_id=sentence_id,
                        doc_id=doc_id,
                        doc_type="Biological_abstract",
                        part=part,
                        split=split,
                        cues=cues,
                        scopes=scopes,
                    )
                )
            out.append("\t\t\t\t</DocumentPart>")
        out.append("\t\t</Document>")
    out += ["\t</DocumentSet>", "</Annotation>"]
    atomic_write(path, "\n".join(out) + "\n")
    return records
