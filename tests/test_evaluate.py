"""Generation backend contract and `dynamo evaluate` end to end, on CPU with a tiny random model
built and saved by the test (no hub access)."""

from __future__ import annotations

import hashlib
import json
import string
from pathlib import Path

import pytest
import torch

from dynamo import grading
from dynamo.cli import main as dynamo_main
from dynamo.errors import UserError
from dynamo.evaluation.evaluate import evaluate, parse_benchmark_items
from dynamo.evaluation.metrics import mean_pass_at_1, mean_pass_at_k
from dynamo.generation import Generation, hf_generate, sampling_kwargs

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "benchmarks"
FIXTURES = Path(__file__).parent / "fixtures" / "benchmarks"
SCORE_KEYS = {
    "benchmark", "variant", "num_problems", "samples_per_problem", "pass_at_1", "pass_at_k",
    "grading_failures", "seconds", "model", "samples_sha256", "model_sha256", "skipped_over_long",
}  # fmt: skip
SAMPLE_KEYS = {"id", "sample", "response", "extracted", "gold", "correct", "truncated", "failure"}
PAD, EOS = 0, 1


def build_tiny_model(path: Path) -> None:
    """2-layer Qwen2 with a character-level tokenizer (ids: <pad>=0, <eos>=1, <unk>=2)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    vocab = {"<pad>": PAD, "<eos>": EOS, "<unk>": 2}
    for ch in string.printable:
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )
    config = Qwen2Config(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=4096, pad_token_id=PAD, eos_token_id=EOS, bos_token_id=EOS,
        tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny-qwen2")
    build_tiny_model(path)
    return path


@pytest.fixture()
def tiny(tiny_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32), AutoTokenizer.from_pretrained(
        tiny_dir
    )


def force_next_token(model, token_id: int) -> None:
    """Make `token_id` the argmax at every step (zero weights, one-hot bias on the LM head)."""
    head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[token_id] = 10.0
    model.lm_head = head


# ----------------------------------------------------------------------------- hf_generate
def check_contract(gens: list[Generation], max_new_tokens: int) -> None:
    for g in gens:
        assert PAD not in g.prompt_ids
        if g.truncated:
            assert len(g.response_ids) == max_new_tokens and EOS not in g.response_ids
        else:
            assert g.response_ids[-1] == EOS and EOS not in g.response_ids[:-1]


def test_counts_order_and_contiguity(tiny):
    model, tokenizer = tiny
    prompts = ["1+1=", "What is 2+2? ", "x"]
    torch.manual_seed(0)
    gens = hf_generate(model, tokenizer, prompts, [2, 0, 3], max_new_tokens=6, batch_size=4)
    assert [g.prompt_index for g in gens] == [0, 0, 2, 2, 2]
    assert gens[0].prompt_ids == tokenizer(prompts[0], add_special_tokens=False)["input_ids"]
    assert gens[4].prompt_ids == tokenizer(prompts[2], add_special_tokens=False)["input_ids"]
    check_contract(gens, 6)
    for g in gens:
        assert g.text == tokenizer.decode(g.response_ids, skip_special_tokens=True)


def test_left_padding_gives_the_same_greedy_output_as_alone(tiny):
    model, tokenizer = tiny
    prompts = ["short", "a much longer prompt with padding on its left side", "mid length one"]
    batched = hf_generate(model, tokenizer, prompts, [1, 1, 1], max_new_tokens=8, temperature=0.0)
    alone = [hf_generate(model, tokenizer, [p], [1], max_new_tokens=8, temperature=0.0)[0] for p in prompts]
    assert [g.response_ids for g in batched] == [g.response_ids for g in alone]


def test_responses_end_at_eos(tiny):
    model, tokenizer = tiny
    force_next_token(model, EOS)
    gens = hf_generate(model, tokenizer, ["abc", "de"], [2, 1], max_new_tokens=5)
    assert all(g.response_ids == [EOS] and not g.truncated and g.text == "" for g in gens)


def test_truncated_when_no_eos_within_max_new_tokens(tiny):
    model, tokenizer = tiny
    seven = tokenizer.convert_tokens_to_ids("7")
    force_next_token(model, seven)
    gens = hf_generate(model, tokenizer, ["abc", "a longer prompt"], [1, 2], max_new_tokens=4, batch_size=2)
    assert all(g.response_ids == [seven] * 4 and g.truncated and g.text == "7777" for g in gens)


def test_sampling_is_reproducible_from_torch_seed_and_restores_train_mode(tiny):
    model, tokenizer = tiny
    model.train()
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        runs.append(
            [g.response_ids for g in hf_generate(model, tokenizer, ["q: ", "r"], [3, 2], max_new_tokens=10)]
        )
    assert runs[0] == runs[1]
    assert model.training


def test_sampling_kwargs():
    assert sampling_kwargs(1.0, 1.0)["top_k"] == 0 and sampling_kwargs(1.0, 1.0)["do_sample"]
    assert sampling_kwargs(0.0, 1.0)["do_sample"] is False
    with pytest.raises(ValueError):
        sampling_kwargs(1.0, 0.0)


# ----------------------------------------------------------------------------- evaluate
def test_parse_benchmark_items():
    assert parse_benchmark_items(["aime24,math500=/x/m.json", "amc23"]) == [
        ("aime24", None),
        ("math500", "/x/m.json"),
        ("amc23", None),
    ]
    with pytest.raises(ValueError, match="twice"):
        parse_benchmark_items(["aime24", "aime24=/x"])


def test_cli_options_match_the_workflow():
    import argparse

    from dynamo.evaluation.evaluate import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    base = ["--model", "m", "--benchmarks", "aime24", "--out", "o"]
    args = parser.parse_args(base)
    assert args.chat_template is None and args.limit == 0 and args.samples == 32  # auto; 0 = all problems
    assert parser.parse_args([*base, "--chat-template"]).chat_template is True
    assert parser.parse_args([*base, "--no-chat-template"]).chat_template is False
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--chat-template", "--no-chat-template"])


def read_outputs(out: Path, name: str) -> tuple[list[dict], dict]:
    lines = [json.loads(line) for line in (out / name / "samples.jsonl").read_text().splitlines()]
    return lines, json.loads((out / name / "scores.json").read_text())


def check_outputs(out: Path, name: str, num_problems: int, samples: int) -> dict:
    lines, scores = read_outputs(out, name)
    assert set(scores) == SCORE_KEYS
    assert scores["benchmark"] == name and scores["num_problems"] == num_problems
    assert scores["samples_per_problem"] == samples
    assert list(scores["pass_at_k"]) == [str(k) for k in range(1, samples + 1)]
    assert len(lines) == num_problems * samples
    by_problem: dict[str, list[dict]] = {}
    for line in lines:
        assert set(line) == SAMPLE_KEYS and isinstance(line["correct"], bool)
        by_problem.setdefault(line["id"], []).append(line)
    assert len(by_problem) == num_problems
    correct = [[s["correct"] for s in rows] for rows in by_problem.values()]
    assert all([s["sample"] for s in rows] == list(range(samples)) for rows in by_problem.values())
    assert scores["pass_at_1"] == pytest.approx(mean_pass_at_1(correct))
    assert scores["pass_at_k"] == {str(k): pytest.approx(v) for k, v in mean_pass_at_k(correct).items()}
    assert not list((out / name).glob(".*tmp*")), "temporary files left behind"
    assert scores["samples_sha256"] == hashlib.sha256((out / name / "samples.jsonl").read_bytes()).hexdigest()
    return scores


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"real benchmark files not found at {SHARED}")
def test_dynamo_evaluate_cli_on_local_math500_copy(tiny_dir, tmp_path):
    problems = sorted(json.loads((SHARED / "math500.json").read_text()), key=lambda r: len(r["problem"]))[:3]
    local = tmp_path / "math500-mini.json"
    local.write_text(json.dumps(problems))
    out = tmp_path / "eval"
    items = f"math500={local},arith-easy={FIXTURES / 'arith-easy.jsonl'}"
    argv = [
        "evaluate", "--model", str(tiny_dir), "--benchmarks", items,
        "--samples", "3", "--out", str(out), "--max-new-tokens", "12", "--batch-size", "4", "--limit", "2",
        "--seed", "7", "--grading-workers", "1",
    ]  # fmt: skip
    assert dynamo_main(argv) == 0
    scores = check_outputs(out, "math500", num_problems=2, samples=3)
    assert scores["variant"] == "math500-3[:2]" and scores["model"] == str(tiny_dir)
    check_outputs(out, "arith-easy", num_problems=2, samples=3)
    first = (out / "math500" / "samples.jsonl").read_text()
    assert dynamo_main(argv) == 0  # same seed, same samples
    assert (out / "math500" / "samples.jsonl").read_text() == first


def test_evaluate_function_on_fixture(tiny_dir, tmp_path):
    scores = evaluate(
        tiny_dir,
        [("aime25", str(FIXTURES / "aime25.jsonl"))],
        tmp_path,
        samples=2,
        max_new_tokens=8,
        temperature=0.7,
        top_p=0.9,
        progress=False,
        grading_workers=1,
    )
    assert scores["aime25"] == check_outputs(tmp_path, "aime25", num_problems=4, samples=2)


class CannedBackend:
    """Stands in for a model: problem i answers correctly in its first i samples."""

    tokenizer = None

    def __init__(self, answers: list[str]) -> None:
        self.answers, self.calls = answers, []

    def generate(self, prompts, counts, *, max_new_tokens, temperature, top_p, seed, progress=None):
        self.calls.append((len(prompts), tuple(counts), max_new_tokens, temperature, top_p, seed))
        gens = []
        for i, count in enumerate(counts):
            for j in range(count):
                answer = self.answers[i] if j < i else "999999"
                text = f"Reasoning... so the final answer is $\\boxed{{{answer}}}$."
                gens.append(Generation(i, [5], [6, EOS], text, False))
        if progress:
            progress(len(gens))
        return gens


def test_scores_from_known_verdicts(tmp_path):
    backend = CannedBackend(["70", "588", "016", "468"])
    scores = evaluate(
        "canned", ["aime25=" + str(FIXTURES / "aime25.jsonl")], tmp_path, samples=4, max_new_tokens=5,
        backend=backend, seed=3, progress=False,
    )["aime25"]  # fmt: skip
    assert backend.calls == [(4, (4, 4, 4, 4), 5, 1.0, 1.0, 3)]
    # problem i has i correct out of 4: pass@1 = mean(0, 1/4, 2/4, 3/4); pass@4 = 3/4
    assert scores["pass_at_1"] == pytest.approx(0.375)
    assert scores["pass_at_k"]["4"] == pytest.approx(0.75)
    assert scores["pass_at_k"]["2"] == pytest.approx((0 + 0.5 + 5 / 6 + 1) / 4)
    lines, _ = read_outputs(tmp_path, "aime25")
    assert lines[4]["correct"] and lines[4]["extracted"] == "588" and lines[4]["gold"] == ["588"]
    assert lines[8]["correct"]  # gold "016" vs "016"


def test_evaluate_output_verifies_and_regrading_finds_a_changed_verdict(tmp_path):
    from dynamo.evaluation.verify import check_score_file

    evaluate(
        "canned", ["aime25=" + str(FIXTURES / "aime25.jsonl")], tmp_path, samples=4, max_new_tokens=5,
        backend=CannedBackend(["70", "588", "016", "468"]), progress=False, grading_workers=1,
    )  # fmt: skip
    path = tmp_path / "aime25" / "scores.json"
    assert check_score_file(path, regrade=True) == []
    # A stored verdict flipped, with scores and hash rewritten to match it (as a changed grader would):
    # consistent on its face, so only grading the responses again finds it.
    samples = path.with_name("samples.jsonl")
    lines = [json.loads(line) for line in samples.read_text().splitlines()]
    lines[0]["correct"] = not lines[0]["correct"]
    text = "".join(json.dumps(line) + "\n" for line in lines)
    samples.write_text(text)
    correct = [[r["correct"] for r in lines if r["id"] == pid] for pid in dict.fromkeys(r["id"] for r in lines)]
    scores = json.loads(path.read_text())
    scores["pass_at_1"] = mean_pass_at_1(correct)
    scores["pass_at_k"] = {str(k): v for k, v in mean_pass_at_k(correct).items()}
    scores["samples_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    path.write_text(json.dumps(scores))
    assert check_score_file(path) == []
    (problem,) = check_score_file(path, regrade=True)
    assert "1 stored verdict(s) differ from a fresh grade" in problem and str(samples) in problem


def build_short_context_model(path: Path, positions: int = 256) -> None:
    build_tiny_model(path)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "max_position_embeddings": positions}))


def test_over_long_problem_is_refused_or_skipped_before_sampling(tmp_path):
    model = tmp_path / "tiny-256"
    build_short_context_model(model)
    rows = [
        {"id": "short", "problem": "What is 2+2?", "answer": "4"},
        {"id": "long", "problem": "What is " + "1+" * 299 + "1?", "answer": "300"},  # 607 characters
        {"id": "huge", "problem": "1+" * 500_000 + "1?", "answer": "1"},  # over without tokenizing
    ]
    bench = tmp_path / "b.jsonl"
    bench.write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = dict(samples=2, max_new_tokens=16, progress=False, grading_workers=1)
    with pytest.raises(
        UserError, match=r"b\.jsonl, problem 'long': prompt of \d+ (tokens|characters), over the 240"
    ):
        evaluate(model, [("mine", str(bench))], tmp_path / "reject", **common)
    assert not (tmp_path / "reject").exists()  # refused before anything was sampled or written
    scores = evaluate(model, [("mine", str(bench))], tmp_path / "skip", over_long="skip", **common)["mine"]
    assert scores["skipped_over_long"] == ["long", "huge"] and scores["num_problems"] == 1
    check_outputs(tmp_path / "skip", "mine", num_problems=1, samples=2)
    # The score file names its model by hash: a changed model no longer verifies against it.
    from dynamo.evaluation.verify import check_score_file, model_sha256

    path = tmp_path / "skip" / "mine" / "scores.json"
    assert check_score_file(path) == []
    (model / "config.json").write_text((model / "config.json").read_text().replace("256", "255"))
    model_sha256.cache_clear()
    (problem,) = check_score_file(path)
    assert f"the model at {model} has changed" in problem


def teardown_module() -> None:
    grading.shutdown()
