#!/usr/bin/env bash
# Evaluate one model folder on the hallucination benchmarks that `rlhfv data get` prepared under $DATA (default data/):
#   POPE (data/pope), Object HalBench (data/object_halbench; rule-based CHAIR, see docs/evaluation.md for the LLM
#   extraction the papers used), AMBER (data/amber), MMHal-Bench (data/mmhal; answers always, the 0-6 judge only when
#   JUDGE_MODEL names a judge behind OPENAI_BASE_URL / OPENAI_API_KEY).
# Then one table of the headline numbers: OUT_DIR/report.md (its row is NAME, default the model folder's name).
#
#   recipes/evaluate.sh MODEL_DIR OUT_DIR [pope] [object-halbench] [amber] [mmhal]     (default: all four)
#
# Answers are resumable: run the same line again after an interruption. Extra generation flags (e.g. --batch-size 16,
# --dtype bfloat16) go in GEN_ARGS; extra flags of the Object HalBench and AMBER scorers in SCORE_ARGS (e.g.
# --allow-approximate where NLTK's data cannot be installed: every number is then marked approximate). RLHFV (default
# `rlhfv`) is the command that runs rlhfv.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: recipes/evaluate.sh MODEL_DIR OUT_DIR [pope] [object-halbench] [amber] [mmhal]" >&2
    exit 2
fi
model=$1
out=$2
shift 2
benchmarks=${*:-pope object-halbench amber mmhal}
DATA=${DATA:-data}
name=${NAME:-$(basename "$model")}  # the model's row in report.md
read -r -a rlhfv <<< "${RLHFV:-rlhfv}"
read -r -a gen <<< "${GEN_ARGS:-}"
read -r -a score <<< "${SCORE_ARGS:-}"
mkdir -p "$out"
results=()
for benchmark in $benchmarks; do
    case $benchmark in
    pope)
        "${rlhfv[@]}" eval pope generate --model "$model" --pope-dir "$DATA/pope" --images "$DATA/pope/val2014" \
            --output_dir "$out/pope" --quiet "${gen[@]}"
        "${rlhfv[@]}" eval pope score --pope-dir "$DATA/pope" --answers "$out/pope" --output_dir "$out/pope.json"
        results+=(--result "$name=$out/pope.json")
        ;;
    object-halbench)
        # beam 3, as the RLHF-V / RLAIF-V evaluations decode Object HalBench
        "${rlhfv[@]}" eval object-halbench generate --model "$model" --questions "$DATA/object_halbench/questions.jsonl" \
            --num-beams 3 --output_dir "$out/object_halbench.jsonl" --quiet "${gen[@]}"
        "${rlhfv[@]}" eval object-halbench score --questions "$DATA/object_halbench/questions.jsonl" \
            --answers "$out/object_halbench.jsonl" --instances "$DATA/object_halbench/instances_val2014.json" \
            --captions "$DATA/object_halbench/captions_val2014.json" --quiet --output_dir "$out/object_halbench.json" "${score[@]}"
        results+=(--result "$name=$out/object_halbench.json")
        ;;
    amber)
        "${rlhfv[@]}" eval amber generate --model "$model" --queries "$DATA/amber/query_all.json" \
            --images "$DATA/amber/image" --output_dir "$out/amber.jsonl" --quiet "${gen[@]}"
        "${rlhfv[@]}" eval amber score --answers "$out/amber.jsonl" --queries "$DATA/amber/query_all.json" \
            --annotations "$DATA/amber/annotations.json" --relation "$DATA/amber/relation.json" \
            --safe-words "$DATA/amber/safe_words.txt" --output_dir "$out/amber.json" "${score[@]}"
        results+=(--result "$name=$out/amber.json")
        ;;
    mmhal)
        "${rlhfv[@]}" eval mmhal generate --model "$model" --template "$DATA/mmhal/response_template.json" \
            --images "$DATA/mmhal/images" --output_dir "$out/mmhal_responses.json" --quiet "${gen[@]}"
        if [ -n "${JUDGE_MODEL:-}" ]; then
            "${rlhfv[@]}" eval mmhal judge --responses "$out/mmhal_responses.json" --model "$JUDGE_MODEL" --quiet \
                --output_dir "$out/mmhal.json"
            results+=(--result "$name=$out/mmhal.json")
        else
            echo "MMHal-Bench: answers in $out/mmhal_responses.json; set JUDGE_MODEL (and OPENAI_BASE_URL) to rate them"
        fi
        ;;
    *)
        echo "unknown benchmark '$benchmark' (choose pope, object-halbench, amber, mmhal)" >&2
        exit 2
        ;;
    esac
done
if [ ${#results[@]} -gt 0 ]; then
    "${rlhfv[@]}" eval report "${results[@]}" --output_dir "$out/report.md" > /dev/null
    echo
    cat "$out/report.md"
    echo "benchmark reports: $out/*.json; table: $out/report.md"
fi
