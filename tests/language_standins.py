"""Stand-ins for NLTK's punkt splitter and tagger, WordNet and spaCy, shared by the tests and the official-code runs.

NLTK's data and spaCy's models cannot be installed on the machines the tests run on, so the expected numbers in
tests/fixtures/*/expected_official.json were computed by running each benchmark's official scoring code with THESE
functions put in place of those resources (nltk.tokenize.sent_tokenize, nltk.pos_tag, WordNetLemmatizer.lemmatize,
spacy.load(...)), and the tests give rlhfv the same functions through rlhfv.eval.language.LanguageTools. They are
small, deterministic and deliberately not good: a disagreement shows up as a different number.
"""

from __future__ import annotations

import re


# words the stand-in tagger does not call nouns, with the Penn tag it gives them
NOT_NOUNS = {
    **dict.fromkeys("a an the this that these those some two three several another each".split(), "DT"),
    **dict.fromkeys("is are was were be been can could may might will would".split(), "VBZ"),
    **dict.fromkeys("watch watches stand stands sit sits run runs lie lies play plays seen hold holds".split(), "VB"),
    **dict.fromkeys("in on at of near with by under behind next to and or but there it its their".split(), "IN"),
    **dict.fromkeys("red green blue white black brown small large big sunny yellow wooden".split(), "JJ"),
    **dict.fromkeys("yes no not also very".split(), "RB"),
}
LEMMAS = {"men": "man", "women": "woman", "people": "people", "children": "child", "glasses": "glass",
          "buses": "bus", "benches": "bench", "dishes": "dish", "knives": "knife", "mice": "mouse"}  # fmt: skip
SIMILAR = {
    frozenset(p): s
    for p, s in [
        (("puppy", "dog"), 0.9),
        (("lawn", "grass"), 0.85),
        (("kitten", "cat"), 0.9),
        (("cat", "dog"), 0.82),
        (("automobile", "car"), 0.95),
        (("vehicle", "car"), 0.81),
        (("sofa", "couch"), 0.93),
        (("seat", "chair"), 0.84),
        (("monitor", "TV"), 0.86),
        (("monitor", "screen"), 0.88),
        (("frisbee", "disc"), 0.83),
        (("boy", "person"), 0.81),
        (("girl", "person"), 0.81),
        (("tree", "plant"), 0.82),
    ]
}


def split_sentences(text: str, language: str = "english") -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def tag(tokens: list[str]) -> list[tuple[str, str]]:
    tags = []
    for token in tokens:
        if not token[:1].isalpha():
            tags.append((token, "."))
        elif token.lower() in NOT_NOUNS:
            tags.append((token, NOT_NOUNS[token.lower()]))
        else:
            tags.append((token, "NNP" if token[:1].isupper() else ("NNS" if token.endswith("s") else "NN")))
    return tags


def lemmatize(word: str, pos: str = "n") -> str:
    if word in LEMMAS:
        return LEMMAS[word]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us")):
        return word[:-1]
    return word


def similarity(a: str, b: str) -> float:
    if a == b:
        return 1.0
    return SIMILAR.get(frozenset((a, b)), 0.1)


def analyze_phrase(text: str) -> list[tuple[str, str]]:
    """spaCy stand-in: tokens split on spaces and punctuation, lemma = lemmatize(lower case), tag = tag()."""
    tokens = re.findall(r"\w+|[^\w\s]", text)
    return [(lemmatize(token.lower()), pos) for token, pos in tag(tokens)]


def tools():
    from rlhfv.eval.language import LanguageTools

    return LanguageTools(
        split_sentences=split_sentences,
        tag=tag,
        lemmatize=lemmatize,
        similarity=similarity,
        analyze_phrase=analyze_phrase,
    )
