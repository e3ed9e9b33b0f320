"""AI and self feedback that yields dense preference pairs (RLAIF-V's loop), and iterative on-policy rounds.

One module per stage; each stage reads the previous stage's file and writes its own, so a run can be inspected and
resumed:

    sampling   instructions -> N sampled answers each                      answers.jsonl
    claims     answer -> atomic claims with character spans                claims.jsonl
    questions  claim -> yes/no question                                    (inside claims.jsonl)
    labeling   (image, question) -> P(yes), P(no), verdict                 labels.jsonl
    scoring    answer -> score = -(claims judged false)                    scores.jsonl
    pairing    scored answers -> pairs (gap >= 1, cap, length balance)     pairs.jsonl
    spans      false claims of the rejected answer -> rejected_spans
    dataset    pairs -> the dense preference dataset `rlhfv train` reads   dataset/

`pipeline.py` runs the stages, `cli.py` is `rlhfv feedback`, `iterate.py` is `rlhfv iterate`.
"""
