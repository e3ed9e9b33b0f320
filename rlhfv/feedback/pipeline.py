"""`run_feedback(config)`: the stages of RLAIF-V's loop, each saved to its own file in `config.out`, and resumable.

The score and pairs stages are in pair_stage.py, the summary in summary.py.

Files (docs/feedback.md):
    answers.jsonl   {id, question, image?, image_path?, answers: [...]}  or  {id, question, reject}
    claims.jsonl    {id, answer_index, answer, claims: [{text, start, end, question}]}
    labels.jsonl    {id, answer_index, labels: [{p_yes, p_no, verdict, reason, detail}]}
    scores.jsonl    {id, answer_index, score, reason, claims, false, unlabeled}
    pairs.jsonl     {pair_id, id, question, image_path, chosen, rejected, chosen_index, rejected_index, chosen_score,
                     rejected_score, chosen_spans, rejected_spans}
    pairs_stats.json, dataset/ (the dense dataset), rejects.jsonl, summary.json
    instructions.jsonl {id, question, where, image?, image_path?, merged?}; instruction_merges.jsonl (the rows with
                    merged rows), instruction_rejects.jsonl, instructions_read.json, images/ (embedded images)
    stages/<stage>.done  marks a finished stage: a rerun skips it; sampling and labeling also resume mid-stage.

Sampling and labeling are split over processes when the command runs under `accelerate launch` (or torchrun): each
process takes every n-th instruction / answer and appends to its own `answers.part<k>.jsonl` /
`labels.part<k>.jsonl`; process 0 merges the parts in input order and runs the cheap stages alone. The parts are
what a resumed run reads, whatever its process count.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from data_tools.errors import CommandError
from rlhfv.feedback.config import STAGES, FeedbackConfig
from rlhfv.feedback.scoring import NO_CLAIMS
from rlhfv.feedback.summary import format_summary  # noqa: F401  (re-exported: `rlhfv feedback` prints it)


# stages every process runs on its share; the others run on process 0 alone
SHARDED_STAGES = ("sample", "label")


logger = logging.getLogger(__name__)


class FeedbackRun:
    def __init__(self, config: FeedbackConfig, loaded_policy=None):
        self.config = config
        self.out = Path(config.out)
        self._policy = loaded_policy
        self._labeler = None
        self._client = None
        self._state = None  # accelerate's PartialState when several processes run
        self.rank, self.world = 0, 1
        self.device = config.device

    # ---- files -------------------------------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        return self.out / name

    def stage_done(self, stage: str) -> bool:
        return self.path(f"stages/{stage}.done").is_file()

    def mark_done(self, stage: str) -> None:
        marker = self.path(f"stages/{stage}.done")
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("done\n")

    def write_jsonl(self, name: str, records) -> None:
        """Write then rename: a crash never leaves half a stage file that looks finished."""
        path = self.path(name)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record) + "\n")
        os.replace(tmp, path)

    def read_jsonl(self, name: str) -> list[dict]:
        path = self.path(name)
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    # ---- models ------------------------------------------------------------------------------------------------
    def policy(self):
        if self._policy is None:
            from rlhfv.generation.generate import load_model

            self._policy = load_model(self.config.policy, self.device)
        return self._policy

    def client(self):
        if self._client is None:
            from rlhfv.endpoint import EndpointClient, EndpointConfig, EndpointError

            c = self.config
            try:
                self._client = EndpointClient(
                    EndpointConfig(
                        base_url=c.base_url,
                        model=c.endpoint_model,
                        api_key_env=c.api_key_env,
                        cache_dir=c.endpoint_cache_dir or str(self.path("endpoint_cache")),
                        timeout=c.endpoint_timeout,
                        max_retries=c.endpoint_max_retries,
                        concurrency=c.endpoint_concurrency,
                    )
                )
            except (EndpointError, ValueError) as error:
                raise CommandError(str(error)) from None
        return self._client

    def generator(self, kind: str):
        from rlhfv.feedback.generators import EndpointGenerator, TransformersGenerator

        if kind == "endpoint":
            return EndpointGenerator(self.client())
        from rlhfv.generation.generate import load_model

        return TransformersGenerator(load_model(self.config.llm_model, self.device))

    def labeler(self):
        from rlhfv.feedback.labeling import EndpointLabeler, TransformersLabeler, TruthLabeler

        if self._labeler is None:
            c = self.config
            if c.labeler == "truth":
                self._labeler = TruthLabeler.from_file(c.truth_scenes)
            elif c.labeler == "endpoint":
                self._labeler = EndpointLabeler(self.client(), c.top_logprobs, c.min_answer_probability)
            else:
                from rlhfv.generation.generate import load_model

                loaded = self.policy() if c.labeler == "self" else load_model(c.labeler, self.device)
                try:
                    self._labeler = TransformersLabeler(loaded, c.label_batch_size, c.min_answer_probability)
                except ValueError as error:
                    raise CommandError(str(error)) from None
        return self._labeler

    def fail(self, reject: dict) -> None:
        if self.config.on_error == "fail":
            where = reject.get("where", "")
            field = f", field '{reject['field']}'" if reject.get("field") else ""
            raise CommandError(
                f"{where}{field}: {reject['detail']} [{reject['reason']}] (--on-error skip counts such inputs in "
                f"{self.path('rejects.jsonl')} and goes on)"
            )

    # ---- stages ------------------------------------------------------------------------------------------------
    def run(self) -> dict:
        from rlhfv.feedback.outputs import check_feedback_out

        check_feedback_out(self.config)
        self.start_processes()
        self.out.mkdir(parents=True, exist_ok=True)
        self.rows = self.read_prompts()
        for stage in STAGES:
            if not self.stage_done(stage):
                if stage in SHARDED_STAGES or self.rank == 0:
                    getattr(self, f"stage_{stage}")()
                self.barrier()
                if self.rank == 0:
                    self.mark_done(stage)
                self.barrier()
            if stage == self.config.stop_after:
                break
        if self.rank == 0:
            self.summarize()
        self.barrier()
        return json.loads(self.path("summary.json").read_text())

    def read_prompts(self) -> list[dict]:
        """Process 0 reads the prompts (any layout the converter reads), writes embedded images once and the
        instructions, merge report and rejects; every process then reads the instructions it wrote."""
        from rlhfv.feedback.instructions import read_instructions

        c = self.config
        if self.rank == 0:
            result = read_instructions(
                c.prompts,
                c.images_dir or self.path("images"),
                c.prompts_format,
                c.prompts_image_root,
                self.fail,
                c.progress,
                c.strict_paths,
            )
            instructions = [i.to_json() for i in result.instructions]
            self.write_jsonl("instructions.jsonl", instructions)
            self.write_jsonl("instruction_merges.jsonl", [i for i in instructions if i.get("merged")])
            self.write_jsonl("instruction_rejects.jsonl", result.rejects)
            read = {
                "rows": result.rows,
                "instructions": len(instructions),
                "rows_merged": result.merged_rows,
                "instructions_with_merged_rows": sum(bool(i.get("merged")) for i in instructions),
                "rejected": len(result.rejects),
                "formats": {path: name for path, (name, _) in result.formats.items()},
            }
            self.path("instructions_read.json").write_text(json.dumps(read, indent=2) + "\n")
            for path, (name, why) in result.formats.items():
                logger.info("prompts: %s: %s (%s)", path, name, why)
        self.barrier()
        rows = []
        for record in self.read_jsonl("instructions.jsonl"):
            row = {"id": record["id"], "question": record["question"], "_where": record["where"]}
            if record.get("image") is not None:
                row.update(image=record["image"], _image_path=record["image_path"])
            rows.append(row)
        return rows

    # ---- several processes -------------------------------------------------------------------------------------
    def start_processes(self) -> None:
        """Under `accelerate launch` / torchrun (WORLD_SIZE > 1): join the process group, one device per process."""
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return
        from accelerate import PartialState

        self._state = PartialState(cpu=self.config.device == "cpu")
        self.rank, self.world = self._state.process_index, self._state.num_processes
        if self.device is None:
            self.device = str(self._state.device)

    def barrier(self) -> None:
        if self._state is not None:
            self._state.wait_for_everyone()

    def parts(self, stem: str) -> list[Path]:
        return sorted(self.out.glob(f"{stem}.part*.jsonl"))

    def read_parts(self, stem: str) -> list[dict]:
        """Every complete line of every process's part file (a line cut short by a crash is left out: redone)."""
        records = []
        for path in self.parts(stem):
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return records

    def done_before(self, stem: str, key) -> set:
        """Keys finished by any process of any earlier run; read by all before any process writes."""
        done = {key(r) for r in self.read_parts(stem)}
        self.barrier()
        return done

    def stage_sample(self) -> None:
        from rlhfv.feedback.sampling import TransformersSampler, sample_answers

        done = self.done_before("answers", lambda r: r["id"])
        mine = [row for row in self.rows[self.rank :: self.world] if row["id"] not in done]
        if self.config.sampler == "vllm":
            from rlhfv.feedback.vllm_sampling import VLLMSampler

            sampler = VLLMSampler(self.config, self.rank, self.world)
        else:
            sampler = TransformersSampler(self.policy, self.config)
        sample_answers(mine, self.path(f"answers.part{self.rank}.jsonl"), sampler, self.config, self.fail)
        if hasattr(sampler, "close"):
            sampler.close()  # vLLM's engine frees its GPU memory before labeling
        self.barrier()
        if self.rank == 0:
            by_id = {r["id"]: r for r in self.read_parts("answers")}
            self.write_jsonl("answers.jsonl", [by_id[row["id"]] for row in self.rows if row["id"] in by_id])

    def answered(self) -> list[dict]:
        return [r for r in self.read_jsonl("answers.jsonl") if "answers" in r]

    def stage_claims(self) -> None:
        from rlhfv.feedback import claims as claims_mod
        from rlhfv.feedback import questions as questions_mod
        from rlhfv.feedback.prompts import CLAIMS_PROMPT, QUESTION_PROMPT, load_prompt

        c = self.config
        if c.claim_splitter == "rule":
            splitter = claims_mod.RuleClaimSplitter()
        else:
            prompt = load_prompt(c.claims_prompt_file, CLAIMS_PROMPT, ("question", "answer"))
            splitter = claims_mod.LLMClaimSplitter(self.generator(c.claim_splitter), prompt)
        if c.question_writer == "rule":
            writer = questions_mod.RuleQuestionWriter(c.question_template or questions_mod.QUESTION_TEMPLATE)
        else:
            prompt = load_prompt(c.question_prompt_file, QUESTION_PROMPT, ("claim",))
            writer = questions_mod.LLMQuestionWriter(self.generator(c.question_writer), prompt)
        items, keys = [], []
        for row in self.answered():
            for k, answer in enumerate(row["answers"]):
                items.append((row["question"], answer))
                keys.append((row["id"], k))
        try:
            split = splitter.split_many(items)
            texts = [claim.text for claims in split for claim in claims]
            questions = iter(writer.write_many(texts))
        except Exception as error:
            from rlhfv.endpoint import EndpointError

            if isinstance(error, EndpointError):
                raise CommandError(f"claims: {error}") from None
            raise
        records = []
        for (row_id, k), (_, answer), claims in zip(keys, items, split, strict=True):
            if not claims:
                where = f"{self.path('answers.jsonl')}: id {row_id}, answer {k}"
                detail = f"no claims in the answer {answer[:80]!r}"
                self.fail({"reason": NO_CLAIMS, "where": where, "field": "answers", "detail": detail})
            with_questions = [{**claim.to_json(), "question": next(questions)} for claim in claims]
            records.append({"id": row_id, "answer_index": k, "answer": answer, "claims": with_questions})
        self.write_jsonl("claims.jsonl", records)

    def stage_label(self) -> None:
        from tqdm.auto import tqdm

        from rlhfv.feedback.labeling import LabelRequest

        images = {r["id"]: (r.get("image"), r.get("image_path")) for r in self.answered()}
        path = self.path(f"labels.part{self.rank}.jsonl")
        truncate_cut_line(path)
        done = self.done_before("labels", lambda r: (r["id"], r["answer_index"]))
        claims = self.read_jsonl("claims.jsonl")
        todo = [r for r in claims[self.rank :: self.world] if (r["id"], r["answer_index"]) not in done]
        chunk = max(1, self.config.label_batch_size * 4)
        with (
            path.open("a", encoding="utf-8") as f,
            tqdm(
                total=sum(len(r["claims"]) for r in todo), desc="label", unit="claim", disable=not self.config.progress
            ) as bar,
        ):
            for start in range(0, len(todo), chunk):
                records = todo[start : start + chunk]
                requests = []
                for record in records:
                    image, image_path = images[record["id"]]
                    requests += [LabelRequest(c["question"], image_path, image, c["text"]) for c in record["claims"]]
                labels = iter(self.labeler().label_many(requests, progress=False) if requests else [])
                lines = []
                for record in records:
                    got = [next(labels).to_json() for _ in record["claims"]]
                    for n, label in enumerate(got):
                        if label["reason"]:
                            where = f"id {record['id']}, answer {record['answer_index']}, claim {n}"
                            detail = label["detail"] or label["reason"]
                            self.fail({"reason": label["reason"], "field": "labels", "where": where, "detail": detail})
                    lines.append({"id": record["id"], "answer_index": record["answer_index"], "labels": got})
                for line in lines:
                    f.write(json.dumps(line) + "\n")
                f.flush()
                bar.update(len(requests))
        self.barrier()
        if self.rank == 0:
            by_key = {(r["id"], r["answer_index"]): r for r in self.read_parts("labels")}
            keys = [(r["id"], r["answer_index"]) for r in claims]
            self.write_jsonl("labels.jsonl", [by_key[k] for k in keys if k in by_key])

    def stage_score(self) -> None:
        from rlhfv.feedback.pair_stage import write_scores

        write_scores(self)

    def stage_pairs(self) -> None:
        from rlhfv.feedback.pair_stage import write_pairs

        write_pairs(self)

    def stage_dataset(self) -> None:
        from rlhfv.feedback.dataset import write_dataset

        write_dataset(self.read_jsonl("pairs.jsonl"), self.path("dataset"), source=f"feedback:{self.config.prompts}")

    # ---- summary -----------------------------------------------------------------------------------------------
    def summarize(self) -> dict:
        from rlhfv.feedback.summary import summarize

        return summarize(self)


def truncate_cut_line(path: Path) -> None:
    """Remove a last line that a kill cut short, so that appended lines start on a line of their own."""
    from rlhfv.feedback.sampling import done_ids

    done_ids(path)


def run_feedback(config: FeedbackConfig, loaded_policy=None) -> dict:
    return FeedbackRun(config, loaded_policy).run()
