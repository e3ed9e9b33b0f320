"""The language resources that the benchmarks' official scoring code uses, with one injection point each.

AMBER's inference.py and Object HalBench's eval_gpt_obj_halbench.py find objects with NLTK (the punkt sentence
splitter inside `word_tokenize`, the perceptron part-of-speech tagger, the WordNet lemmatizer) and spaCy (word
vectors for AMBER's similarity test; a tagger and lemmatizer for the names an LLM extracted in Object HalBench).
rlhfv uses the same resources when they are installed. When one is missing, loading fails with one line naming the
install command, unless `allow_approximate` is set: then a simple stand-in takes its place, its name is listed in
`LanguageTools.approximate`, and every report built with it says its numbers are approximate. Nothing is ever
replaced silently.

The five fields of `LanguageTools` are the injection points (tests, and anyone comparing with the official code,
put the same stand-ins on both sides):

- `split_sentences(text) -> [sentence]`            NLTK's `sent_tokenize` (punkt), used by `word_tokenize`;
- `tag(tokens) -> [(token, Penn tag)]`              NLTK's `pos_tag`;
- `lemmatize(word) -> lemma`                        NLTK's `WordNetLemmatizer().lemmatize` (noun);
- `similarity(word, word) -> float`                 spaCy `nlp(a).similarity(nlp(b))` (AMBER: en_core_web_lg);
- `analyze_phrase(text) -> [(lemma, Penn tag)]`     spaCy's tokens of `nlp(text)` (Object HalBench: en_core_web_trf).

Words are split inside a sentence by NLTK's own Treebank word tokenizer (plain code, no data to download), so
`word_tokenize` here is NLTK's `word_tokenize` with the sentence splitter above.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from rlhfv.eval.io import EvalInputError


INSTALL = {
    "nltk": "pip install nltk",
    "split_sentences": "python -m nltk.downloader punkt_tab",
    "tag": "python -m nltk.downloader averaged_perceptron_tagger_eng",
    "lemmatize": "python -m nltk.downloader wordnet",
    "similarity": "pip install spacy && python -m spacy download {model}",
    "analyze_phrase": "pip install spacy && python -m spacy download {model}",
}
DESCRIPTION = {
    "split_sentences": "NLTK's punkt sentence splitter",
    "tag": "NLTK's part-of-speech tagger",
    "lemmatize": "NLTK's WordNet data",
    "similarity": "spaCy's {model} word vectors",
    "analyze_phrase": "spaCy's {model} tagger and lemmatizer",
}


@dataclass
class LanguageTools:
    """One callable per resource; None where the scorer does not need it."""

    split_sentences: Callable[[str], list[str]] | None = None
    tag: Callable[[list[str]], list[tuple[str, str]]] | None = None
    lemmatize: Callable[[str], str] | None = None
    similarity: Callable[[str, str], float] | None = None
    analyze_phrase: Callable[[str], list[tuple[str, str]]] | None = None
    approximate: list[str] = field(default_factory=list)  # resources replaced by rlhfv's approximations
    word_tokenizer: Callable[[str], list[str]] | None = None  # splits one sentence; default NLTK's Treebank

    def word_tokenize(self, text: str) -> list[str]:
        """NLTK's `word_tokenize(text)`: split into sentences, then each sentence into Treebank tokens."""
        tokenize = self.word_tokenizer or _treebank()
        return [token for sentence in self.split_sentences(text) for token in tokenize(sentence)]


def load_tools(
    needs: tuple[str, ...], allow_approximate: bool = False, spacy_models: dict[str, str] | None = None
) -> LanguageTools:
    """The installed resources named in `needs` (field names of LanguageTools); see the module docstring."""
    spacy_models = spacy_models or {}
    tools = LanguageTools()
    try:
        tools.word_tokenizer = _treebank()
    except ImportError:
        _missing("nltk", "NLTK", allow_approximate, "")
        tools.word_tokenizer = _approximate_words
        tools.approximate.append("NLTK's word tokenizer")
    for need in needs:
        model = spacy_models.get(need, "")
        try:
            setattr(tools, need, _LOADERS[need](model))
        except (ImportError, LookupError, OSError) as error:
            what = DESCRIPTION[need].format(model=model)
            _missing(need, what, allow_approximate, model, error)
            setattr(tools, need, _APPROXIMATIONS[need])
            tools.approximate.append(what)
    return tools


def _missing(need: str, what: str, allow_approximate: bool, model: str, error: Exception | None = None) -> None:
    if allow_approximate:
        return
    first_line = str(error).strip().splitlines()[0] if error is not None and str(error).strip() else ""
    detail = f" ({first_line[:120]})" if first_line and not first_line.startswith("*") else ""
    raise EvalInputError(
        f"{what} is not installed{detail}: install it with `{INSTALL[need].format(model=model)}`, or pass "
        "--allow-approximate to use rlhfv's approximation (every number is then marked approximate)"
    )


def approximate_note(tools: LanguageTools) -> str | None:
    if not tools.approximate:
        return None
    return (
        "APPROXIMATE: " + ", ".join(tools.approximate) + " replaced by rlhfv's approximations (--allow-approximate); "
        "these numbers are not the official script's"
    )


# ---- the real resources --------------------------------------------------------------------------------------------
def _treebank() -> Callable[[str], list[str]]:
    from nltk.tokenize import NLTKWordTokenizer

    return NLTKWordTokenizer().tokenize


def _nltk_sentences(_model: str):
    import nltk

    nltk.sent_tokenize("A check. Of the data.")  # LookupError when punkt is not installed
    return nltk.sent_tokenize


def _nltk_tagger(_model: str):
    import nltk

    nltk.pos_tag(["a", "check"])
    return nltk.pos_tag


def _wordnet(_model: str):
    from nltk.stem import WordNetLemmatizer

    lemmatizer = WordNetLemmatizer()
    lemmatizer.lemmatize("dogs")
    return lru_cache(maxsize=200_000)(lemmatizer.lemmatize)


def _spacy(model: str):
    import spacy

    return spacy.load(model)


def _spacy_similarity(model: str):
    nlp = _spacy(model)
    doc = lru_cache(maxsize=100_000)(nlp)

    @lru_cache(maxsize=1_000_000)
    def similarity(a: str, b: str) -> float:
        return doc(a).similarity(doc(b))

    return similarity


def _spacy_phrase(model: str):
    nlp = _spacy(model)
    return lambda text: [(token.lemma_, token.tag_) for token in nlp(text)]


_LOADERS = {
    "split_sentences": _nltk_sentences,
    "tag": _nltk_tagger,
    "lemmatize": _wordnet,
    "similarity": _spacy_similarity,
    "analyze_phrase": _spacy_phrase,
}


# ---- approximations (only with allow_approximate; every report then says so) ----------------------------------------
_NOT_NOUNS = set(
    "a an the this that these those there here it its they them their he she his her we our you your i my me "
    "is are was were be been being am has have had do does did can could may might must shall should will would "
    "and or but nor so yet if then than as of in on at by for with from to into onto over under near behind above "
    "below between among around through up down out off about very also not no some any each every all both few "
    "many much more most other such own same only just too what which who whom whose where when why how".split()
)


def _approximate_sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def _approximate_words(sentence: str) -> list[str]:
    return re.findall(r"\w+(?:[-']\w+)*|[^\w\s]", sentence)


def _approximate_tag(tokens: list[str]) -> list[tuple[str, str]]:
    """Every alphabetic token outside a short closed-class list is a noun; verbs ending in -ing/-ed are not."""

    def tag(token: str) -> str:
        low = token.lower()
        if not token[:1].isalpha():
            return "SYM"
        if low in _NOT_NOUNS or low.endswith(("ing", "ed", "ly")):
            return "XX"
        return "NN"

    return [(token, tag(token)) for token in tokens]


def _approximate_lemma(word: str) -> str:
    irregular = {
        "men": "man",
        "women": "woman",
        "children": "child",
        "people": "person",
        "feet": "foot",
        "teeth": "tooth",
        "mice": "mouse",
        "geese": "goose",
        "knives": "knife",
        "leaves": "leaf",
    }
    if word in irregular:
        return irregular[word]
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "sses", "xes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        return word[:-1]
    return word


def _approximate_similarity(a: str, b: str) -> float:
    return 1.0 if a == b else 0.0


def _approximate_phrase(text: str) -> list[tuple[str, str]]:
    tokens = _approximate_words(text)
    return [(_approximate_lemma(token), tag) for token, tag in _approximate_tag(tokens)]


_APPROXIMATIONS = {
    "split_sentences": _approximate_sentences,
    "tag": _approximate_tag,
    "lemmatize": _approximate_lemma,
    "similarity": _approximate_similarity,
    "analyze_phrase": _approximate_phrase,
}


@dataclass
class LanguageSettings:
    """The scorers' NLTK and spaCy resources: installed, approximated, or injected."""

    allow_approximate: bool = field(
        default=False,
        metadata={
            "help": "When NLTK's data or the spaCy model is not installed, use rlhfv's approximations instead of "
            "stopping; every number is then marked approximate."
        },
    )
    language_tools: str | None = field(
        default=None,
        metadata={
            "metavar": "MODULE:FUNCTION",
            "help": "A function returning rlhfv.eval.language.LanguageTools, used instead of NLTK/spaCy (to put the "
            "same stand-ins on rlhfv and the official script when comparing them); the report names it.",
        },
    )


def tools_from_args(args, needs: tuple[str, ...], spacy_models: dict[str, str]) -> tuple[LanguageTools, str]:
    """The language tools for a scorer and a one-line description of them for the report."""
    if args.language_tools:
        import importlib

        module, _, function = args.language_tools.partition(":")
        try:
            tools = getattr(importlib.import_module(module), function)()
        except (ImportError, AttributeError, ValueError) as error:
            raise EvalInputError(f"--language-tools {args.language_tools}: cannot load it ({error})") from None
        return tools, f"injected by --language-tools {args.language_tools}"
    tools = load_tools(needs, args.allow_approximate, spacy_models)
    used = {
        "split_sentences": "NLTK punkt",
        "tag": "NLTK pos_tag",
        "lemmatize": "NLTK WordNet",
        "similarity": f"spaCy {spacy_models.get('similarity')} vectors",
        "analyze_phrase": f"spaCy {spacy_models.get('analyze_phrase')}",
    }
    return tools, ", ".join(used[need] for need in needs) + (
        f"; {approximate_note(tools)}" if tools.approximate else ""
    )
