"""The transformers engine on a model whose end-of-turn token is the generation config's, not the
tokenizer's eos (Gemma-2's <end_of_turn>, Llama-3's <|eot_id|>): an answer that ended its turn is "stop",
not "length" (which the quality checks reject as truncated)."""

import pytest

torch = pytest.importorskip("torch")

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _tiny_model_ending_turns_with_eot(path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tk.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="<eos>", pad_token="<pad>",
                                  additional_special_tokens=["<|im_start|>", "<end_of_turn>"])
    tok.chat_template = CHATML
    eot = tok.convert_tokens_to_ids("<end_of_turn>")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                      bos_token_id=tok.bos_token_id, eos_token_id=[tok.eos_token_id, eot], pad_token_id=tok.pad_token_id)
    m = LlamaForCausalLM(cfg)
    m.generation_config.eos_token_id = [tok.eos_token_id, eot]
    m.save_pretrained(path)
    tok.save_pretrained(path)
    return tok, eot


def test_an_answer_ended_by_the_generation_configs_eos_is_not_cut_off(tmp_path):
    from transformers import LogitsProcessor, LogitsProcessorList

    from jprefs.translate.engines import Sampling
    from jprefs.translate.engines.transformers import TransformersEngine

    tok, eot = _tiny_model_ending_turns_with_eot(tmp_path / "tiny-eot")
    eng = TransformersEngine(str(tmp_path / "tiny-eot"), device="cpu", batch_size=1)
    want = tok("OK.", add_special_tokens=False)["input_ids"] + [eot]      # "OK." and the end of the turn

    class Force(LogitsProcessor):
        def __init__(self, plen):
            self.plen = plen

        def __call__(self, ids, scores):
            k = ids.shape[1] - self.plen
            s = torch.full_like(scores, -1e9)
            s[:, want[min(k, len(want) - 1)]] = 0
            return s

    real = eng.lm.generate
    eng.lm.generate = lambda **kw: real(**kw, logits_processor=LogitsProcessorList([Force(kw["input_ids"].shape[1])]))
    [g] = eng.generate([[{"role": "user", "content": "Say OK."}]], Sampling(max_tokens=64))
    assert (g.text, g.finish_reason) == ("OK.", "stop") and g.completion_tokens == 3
