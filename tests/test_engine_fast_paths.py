"""The scorer's shortcuts (packed contexts, head only at targets, last MLP only at targets) on
several architectures, and the fallback when a model breaks one of them."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from evalsuite.engine.packing import ScoreUnit  # noqa: E402
from evalsuite.engine.scoring import Scorer  # noqa: E402

VOCAB = 97


def _model(kind: str):
    torch.manual_seed(0)
    common = dict(vocab_size=VOCAB, max_position_embeddings=128)
    if kind == "gpt_neox":
        cfg = transformers.GPTNeoXConfig(hidden_size=32, num_hidden_layers=2,
                                         num_attention_heads=4, intermediate_size=64, **common)
    elif kind == "llama":
        cfg = transformers.LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                       num_key_value_heads=2, intermediate_size=64, **common)
    else:
        cfg = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=128,
                                      vocab_size=VOCAB)
    cfg._attn_implementation = "sdpa"
    model = transformers.AutoModelForCausalLM.from_config(cfg).eval()
    return model


def _units(model):
    """Contexts shared by several continuations of mixed lengths; every other continuation is
    the model's own greedy continuation, so greedy flags come out both true and false."""
    gen = torch.Generator().manual_seed(7)

    def toks(n):
        return tuple(torch.randint(0, VOCAB, (n,), generator=gen).tolist())

    def greedy(ctx, n):
        seq = list(ctx)
        with torch.no_grad():
            for _ in range(n):
                seq.append(int(model(input_ids=torch.tensor([seq])).logits[0, -1].argmax()))
        return tuple(seq[len(ctx):])

    units = []
    for c_len, cont_lens in [(12, (3, 1, 5, 2)), (7, (4, 4)), (20, (1,)), (9, (6,)),
                             (15, (2, 7, 1)), (3, (1, 1, 1))]:
        ctx = toks(c_len)
        for k in cont_lens:
            cont = greedy(ctx, k) if len(units) % 2 else toks(k)
            units.append(ScoreUnit(len(units), ctx, cont))
    return units


def _plain(model, units):
    out = {}
    for u in units:
        seq = torch.tensor([u.context + u.continuation[:-1]])
        with torch.no_grad():
            logits = model(input_ids=seq, use_cache=False).logits[0].float()
        lp = torch.log_softmax(logits, dim=-1)[len(u.context) - 1:]
        tgt = torch.tensor(u.continuation)
        out[u.request_index] = (float(lp.gather(1, tgt[:, None]).sum()),
                                bool((lp.argmax(-1) == tgt).all()))
    return out


def _assert_same(got, want):
    for i, (lp, greedy) in want.items():
        assert got[i][0] == pytest.approx(lp, abs=1e-4), i
        assert got[i][1] == greedy, i


@pytest.mark.parametrize("kind", ["gpt_neox", "llama", "gpt2"])
def test_all_shortcuts_hold_and_scores_equal_plain_forward(kind):
    model = _model(kind)
    scorer = Scorer(model, device=torch.device("cpu"), pad_token_id=0)
    paths = scorer.check_fast_paths(tol=1e-4)
    assert paths == {"share_context": True, "head_only_at_targets": True,
                     "last_mlp_at_targets": True}
    units = _units(model)
    want = _plain(model, units)
    assert any(g for _, g in want.values())  # the greedy flags are exercised both ways
    _assert_same(scorer.score(units, max_length=64, batch_size=3), want)
    # the shortcut really skips work: the last MLP sees only the head's rows
    seen = []
    mlp = model.base_model.layers[-1].mlp if kind != "gpt2" else model.base_model.h[-1].mlp
    first_linear = next(m for m in mlp.modules() if getattr(m, "weight", None) is not None)
    handle = first_linear.register_forward_pre_hook(
        lambda m, a: seen.append(a[0].reshape(-1, a[0].shape[-1]).shape[0]))
    scorer.score(units, max_length=64, batch_size=64)
    handle.remove()
    targets = sum(len(u.continuation) for u in units)
    assert 0 < sum(seen) <= targets  # distinct target positions only, no context positions
    assert scorer.stats.tokens_forwarded > 2 * targets


def test_a_trim_that_changes_scores_is_switched_off(monkeypatch):
    """If feeding the last MLP only the target rows changed any score (an MLP that is not
    position-wise, say), the probe notices and turns that shortcut off, keeping the others;
    scores then equal a plain forward. Simulated by scaling the trimmed MLP's output."""
    original = Scorer._trim_last_mlp

    def wrong(self, mlp_forward, hidden, *args, **kwargs):
        out = original(self, mlp_forward, hidden, *args, **kwargs)
        return out if self._rows is None or not self.trim_last_mlp else 1.5 * out

    monkeypatch.setattr(Scorer, "_trim_last_mlp", wrong)
    model = _model("gpt_neox")
    scorer = Scorer(model, device=torch.device("cpu"), pad_token_id=0)
    assert scorer.check_fast_paths(tol=1e-4) == {
        "share_context": True, "head_only_at_targets": True, "last_mlp_at_targets": False}
    units = _units(model)
    _assert_same(scorer.score(units, max_length=64, batch_size=4), _plain(model, units))


def test_a_model_without_a_findable_mlp_scores_without_the_trim(monkeypatch):
    import evalsuite.engine.scoring as scoring

    monkeypatch.setattr(scoring, "_last_mlp", lambda model: None)
    model = _model("llama")
    scorer = Scorer(model, device=torch.device("cpu"), pad_token_id=0)
    assert scorer.trim_last_mlp is False
    assert scorer.check_fast_paths(tol=1e-4)["last_mlp_at_targets"] is False
    units = _units(model)
    _assert_same(scorer.score(units, max_length=64, batch_size=4), _plain(model, units))


def test_cpu_allocator_tuning_is_opt_out(monkeypatch):
    import sys

    from evalsuite.engine import loading

    monkeypatch.setattr(loading, "_ALLOCATOR_TUNED", False)
    monkeypatch.setenv("EVALSUITE_MALLOC_TUNING", "0")
    assert loading.tune_cpu_allocator() is False
    monkeypatch.delenv("EVALSUITE_MALLOC_TUNING")
    if sys.platform.startswith("linux"):
        import ctypes.util

        if ctypes.util.find_library("c"):
            assert loading.tune_cpu_allocator() is True
