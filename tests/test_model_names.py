"""Model-name normalisation: the family an id or a title is about (what incidents group by)."""

from __future__ import annotations

import pytest

from mrt_engine.model_names import ModelName, model_family, model_names

# (text, expected family key or None): HuggingFace / ModelScope ids, and titles of issues, PRs
# and releases as they come from vLLM, SGLang, transformers, llama.cpp and the hubs.
TABLE: list[tuple[str, str | None]] = [
    # the issue's own examples
    ("DeepSeek-V3.2-Exp", "deepseek-v3.2"),
    ("deepseek v3.2", "deepseek-v3.2"),
    ("Qwen3-235B-A22B-FP8", "qwen3"),
    ("qwen3 235b", "qwen3"),
    ("Qwen2.5-7B-Instruct", "qwen2.5"),
    # HuggingFace ids
    ("deepseek-ai/DeepSeek-V3.2-Exp", "deepseek-v3.2"),
    ("deepseek-ai/DeepSeek-V3.2-Exp-Base", "deepseek-v3.2"),
    ("deepseek-ai/DeepSeek-V3-0324", "deepseek-v3"),
    ("deepseek-ai/DeepSeek-V3.1-Terminus", "deepseek-v3.1"),
    ("deepseek-ai/DeepSeek-R1-0528", "deepseek-r1"),
    ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "deepseek-r1"),
    ("deepseek-ai/DeepSeek-Coder-V2-Lite-Instruct", "deepseek-v2-coder"),
    ("deepseek-ai/DeepSeek-VL2", "deepseek-vl2"),
    ("Qwen/Qwen3-235B-A22B-Instruct-2507-FP8", "qwen3"),
    ("Qwen/Qwen3-30B-A3B-GGUF", "qwen3"),
    ("Qwen/Qwen3-Next-80B-A3B-Instruct", "qwen3-next"),
    ("Qwen/Qwen3-Coder-480B-A35B-Instruct", "qwen3-coder"),
    ("Qwen/Qwen2.5-VL-72B-Instruct-AWQ", "qwen2.5-vl"),
    ("Qwen/Qwen2.5-72B-Instruct-GPTQ-Int4", "qwen2.5"),
    ("Qwen/QwQ-32B", "qwq"),
    ("Qwen/Qwen-Image", "qwen-image"),
    ("mlx-community/Qwen3-8B-4bit", "qwen3"),
    ("unsloth/DeepSeek-V3.1-GGUF", "deepseek-v3.1"),
    ("meta-llama/Llama-3.1-8B-Instruct", "llama-3.1"),
    ("meta-llama/Meta-Llama-3-70B", "llama-3"),
    ("meta-llama/Llama-4-Scout-17B-16E-Instruct", "llama-4"),
    ("meta-llama/Llama-2-7b-chat-hf", "llama-2"),
    ("mistralai/Mixtral-8x7B-Instruct-v0.1", "mixtral"),
    ("google/gemma-3-27b-it", "gemma-3"),
    ("microsoft/Phi-4-mini-instruct", "phi-4-mini"),
    ("zai-org/GLM-4.5-Air-FP8", "glm-4.5-air"),
    ("THUDM/chatglm3-6b", "chatglm3"),
    ("moonshotai/Kimi-K2-Instruct-0905", "kimi-k2"),
    ("MiniMaxAI/MiniMax-M2", "minimax-m2"),
    ("openai/gpt-oss-120b", "gpt-oss"),
    ("internlm/internlm3-8b-instruct", "internlm3"),
    ("OpenGVLab/InternVL3-78B", "internvl3"),
    ("baidu/ERNIE-4.5-300B-A47B-PT", "ernie-4.5"),
    ("tencent/Hunyuan-A13B-Instruct", "hunyuan"),
    ("black-forest-labs/FLUX.1-dev", "flux-1-dev"),
    ("Wan-AI/Wan2.2-T2V-A14B", "wan2.2"),
    # ModelScope ids (the seed's snapshot names, and hub ids)
    ("sd_xl_turbo", "sdxl-turbo"),
    ("sd_xl_turbo_1.0_fp16", "sdxl-turbo"),
    ("SDXL Turbo - 1-step generation", "sdxl-turbo"),  # the seed snapshot's description
    ("AI-ModelScope/sdxl-turbo", "sdxl-turbo"),
    ("ZhipuAI/GLM-4.5", "glm-4.5"),
    ("LLM-Research/Meta-Llama-3.1-8B-Instruct", "llama-3.1"),
    ("Qwen/Qwen2.5-Coder-32B-Instruct", "qwen2.5-coder"),
    # PR, issue and release titles
    ("[Model] Support DeepSeek-V3.2", "deepseek-v3.2"),
    ("[Bug]: deepseek v3.2 exp crashes with FP8 KV cache", "deepseek-v3.2"),
    ("Add Qwen3-Next support", "qwen3-next"),
    ("[Feature] qwen3 235b a22b tool calling", "qwen3"),
    ("Support Llama 3.1 405B on 8xH100", "llama-3.1"),
    ("v0.10.2: DeepSeek-V3.1 and GPT-OSS improvements", "deepseek-v3.1"),
    ("Release v0.5.0rc0 — Kimi K2 support", "kimi-k2"),
    ("[Perf] Faster MoE kernels for Qwen3-30B-A3B", "qwen3"),
    ("Gemma 3n support", "gemma-3n"),
    ("GLM-4.5V: wrong image tokens", "glm-4.5"),
    ("Qwen2.5 vs Qwen3 tokenizer difference", "qwen2.5"),
    # Chinese titles
    ("【新模型】DeepSeek-V3.2-Exp 正式发布", "deepseek-v3.2"),
    ("通义千问3 开源：235B 参数 MoE", "qwen3"),
    ("千问2.5-VL 部署报错", "qwen2.5-vl"),
    ("发布DeepSeek-R1推理模型", "deepseek-r1"),
    ("混元 A13B 模型上线 ModelScope", "hunyuan"),
    # no model: nothing
    ("Fix typo in README", None),
    ("Bump torch to 2.5.1", None),
    ("Python 3.12 support", None),
    ("CUDA 12.4 build fails", None),
    ("vLLM v0.10.2", None),
    ("Fix the Qwen tokenizer for long prompts", None),
    ("llama.cpp: update ggml", None),
    ("ollama 0.3 released", None),
    ("QwenLM/Qwen-Agent", None),
    ("修复文档中的错别字", None),
    ("", None),
    ("{{ 7*7 }} <script>alert(1)</script> \x1b[31m", None),
    ("deepseekv3.2.1.2.3.4.5" + "9" * 200, None),
]


@pytest.mark.parametrize(("text", "family"), TABLE, ids=[t[:40] or "empty" for t, _ in TABLE])
def test_a_title_or_id_names_its_model_family(text: str, family: str | None) -> None:
    found = model_family(text)
    assert (found.key if found else None) == family


def test_the_table_has_at_least_sixty_real_looking_pairs() -> None:
    assert len(TABLE) >= 60
    assert sum(family is None for _, family in TABLE) >= 10


def test_one_family_however_it_is_written_and_qwen_versions_stay_apart() -> None:
    deepseek = {model_family(t).key for t in ("DeepSeek-V3.2-Exp", "deepseek v3.2")}
    qwen3 = {model_family(t).key for t in ("Qwen3-235B-A22B-FP8", "qwen3 235b")}
    assert deepseek == {"deepseek-v3.2"}
    assert qwen3 == {"qwen3"}
    assert model_family("Qwen2.5").key != model_family("Qwen3").key


def test_a_name_says_org_version_size_and_variants() -> None:
    name = model_names("Qwen/Qwen3-235B-A22B-Instruct-2507-FP8")[0]
    assert name == ModelName(
        family="qwen",
        version="3",
        size="235B-A22B",
        variants=("Instruct", "FP8"),
        org="Qwen",
        revision="2507",
    )
    assert name.display == "Qwen3"
    assert model_names("deepseek-ai/DeepSeek-V3.2-Exp")[0].display == "DeepSeek-V3.2"
    assert model_names("DeepSeek-R1-Distill-Qwen-7B")[0].variants == ("Distill",)
    assert model_names("unsloth/Qwen3-8B-GGUF")[0].variants == ("GGUF",)
    assert model_names("mlx-community/Qwen3-8B-MLX-4bit")[0].variants == ("MLX", "4bit")


def test_every_family_of_a_text_is_named_once_in_order() -> None:
    names = model_names("Qwen3 and DeepSeek-V3.2, then qwen3 235b again")
    assert [n.key for n in names] == ["qwen3", "deepseek-v3.2"]


def test_the_title_wins_over_the_id_and_the_body() -> None:
    found = model_family("Support DeepSeek-V3.2", "vllm-project/vllm", "Also fixes Qwen3")
    assert found is not None and found.key == "deepseek-v3.2"
    assert model_family("Fix a crash", None, "Seen with qwen3 235b").key == "qwen3"
    assert model_family(None, "", "nothing here") is None


@pytest.mark.parametrize(
    ("hostile", "families"),
    [
        ("qwen3 " * 20_000, ["qwen3"]),
        ("qwen" * 25_000, []),
        ("deepseek-" * 12_000, []),
        ("DeepSeek-" + "-".join(["v3"] * 40_000), ["deepseek-v3"]),
        ("9" * 100_000, []),
        ("a" * 100_000, []),
        ("qwen3" + "-235b" * 20_000, ["qwen3"]),
        ("Qwen" + "." * 100_000, []),
        ("Qwen3-" + "A" * 100_000, ["qwen3"]),
        ("通义千问" * 25_000, []),
    ],
    ids=[
        "repeated-name",
        "glued-names",
        "dashes",
        "versions",
        "digits",
        "letters",
        "sizes",
        "dots",
        "long-word",
        "chinese",
    ],
)
def test_a_hostile_100_kb_title_is_read_in_one_pass(hostile: str, families: list[str]) -> None:
    # No time limit here: a regex that backtracks catastrophically (or a quadratic scan) over
    # 100 kB does not finish within the suite's per-test timeout (pyproject: 300 s), while one
    # pass over it takes milliseconds.
    assert [n.key for n in model_names(hostile, limit=len(hostile))] == families


class _CountingFind:
    """The family regex, counting the texts it is asked to scan."""

    def __init__(self, pattern) -> None:
        self.pattern, self.scanned = pattern, []

    def finditer(self, text: str, *args):
        self.scanned.append(text)
        return self.pattern.finditer(text, *args)


def test_a_text_with_no_family_word_is_not_scanned_and_a_family_stops_at_its_first_name(
    monkeypatch,
) -> None:
    """Incidents ask for the family of every alerted event, body included when the title names
    none: a text holding no family's word at all (most bodies) is ruled out by plain substring
    tests, and the family of a text is its first name (the rest is not read)."""
    from mrt_engine import model_names as names

    counting = _CountingFind(names._FIND)
    monkeypatch.setattr(names, "_FIND", counting)
    body = "when running the server with a large batch the request fails " * 20
    assert model_family("[Bug] crash on start", "vllm-project/vllm", body[:280], body) is None
    assert counting.scanned == []
    found = model_family("DeepSeek-V3 and Qwen3 and Llama-4 " + body)
    assert found is not None and found.key == "deepseek-v3"
    assert model_names("DeepSeek-V3 and Qwen3")[1].key == "qwen3"


def test_the_word_filter_changes_no_name_found(monkeypatch) -> None:
    """Every text (ASCII or not, any case) names what the regex alone finds in it."""
    import random

    from mrt_engine import model_names as names

    rng = random.Random(3)
    words = [t for t, _ in TABLE] + ["the", "fix", "v3", "-", " ", "/", "Ⅱ", "ſeed oss", "K", "İ"]
    for _ in range(3000):
        text = "".join(rng.choice(words) + rng.choice(["", " ", "-", "_"]) for _ in range(4))
        text = rng.choice([text, text.upper(), text.lower()])
        expected = names.model_names(text)
        monkeypatch.setattr(names, "_STEMS", None)  # no filter: the regex reads every text
        assert names.model_names(text) == expected, text
        monkeypatch.undo()
