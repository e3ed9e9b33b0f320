"""AI and self feedback that yields dense preference pairs (RLAIF-V's loop), and iterative on-policy rounds.

One module per stage; each stage reads the previous stage's file and writes its own, so a run can be inspected and
resumed:

    sampling   instructions -> N sampled answers each                      answers.jsonl
    claims     answer -> atomic claims with character spans                claims.jsonl
    questions  claim -> yes/no question                                    (inside claims.jsonl)
    labeling   (image, question) -> P(yes), P(no), verdict                 labels.jsonl
    scoring    answer -> score = -(claims judged false)                    scores.jsonl
    pairing    scored answers -> pairs (RLAIF-V's code: gap >= 1, cap,     pairs.jsonl
               identical texts, length balance)
    spans      false claims of the rejected answer -> rejected_spans
    dataset    pairs -> the dense preference dataset `rlhfv train` reads   dataset/

`pipeline.py` runs the stages (`pair_stage.py` the score and pairs stages, `summary.py` the summary), `cli.py` is
`rlhfv feedback`, `iterate.py` is `rlhfv iterate`; `pairs_cli.py` is `rlhfv feedback-pairs`, which pairs scored answers
in RLAIF-V's own file layout (`rlaifv_layout.py`).
"""
