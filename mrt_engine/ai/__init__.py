"""Optional AI (issue 13; off by default, the tracker works the same without it).

An OpenAI-compatible endpoint (a local vLLM or SGLang server, DeepSeek's or Qwen's API) writes
message summaries (AI1, :mod:`.summary`) and embeds texts for semantic rules (AI2,
:mod:`.similarity`). Everything it says is cached in the store by (task, model, content hash),
its tokens are counted against a daily budget, and every failure is a logged, recorded fallback
to the local way (:mod:`.client`): AI never raises into the engine, never runs inside a poll's
transaction and never holds a protected or critical alert back.
"""
