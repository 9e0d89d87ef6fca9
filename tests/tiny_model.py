"""A tiny, fully offline tokenizer and causal LM for fast tests.

`build_tiny_tokenizer` trains a byte-level BPE on the text embedded below (well under a second) and
wraps it in `transformers.PreTrainedTokenizerFast`; `build_tiny_model` saves a seeded 2-layer Llama
next to it. Both round-trip through `AutoTokenizer` / `AutoModelForCausalLM.from_pretrained`.

Use them from a session-scoped fixture:

    @pytest.fixture(scope="session")
    def tiny_tokenizer_path(tmp_path_factory):
        return build_tiny_tokenizer(tmp_path_factory.mktemp("tok"))
"""

from __future__ import annotations

import os

BOS = "<s>"
EOS = "</s>"
PAD = "<pad>"
UNK = "<unk>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK, IM_START, IM_END]

# ChatML: `<|im_start|>role\n...<|im_end|>\n`, then `<|im_start|>assistant\n` on a generation prompt.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

TRAINING_TEXT = """\
Human: What is the capital of France?
Assistant: The capital of France is Paris. It has been the country's capital since the 10th century.
Human: Can you write a short poem about the sea?
Assistant: The sea rolls in with silver light, / it hums a song into the night; / and every wave
that finds the shore / returns to sing a little more.
Instruction: Summarise the following paragraph in one sentence.
Input: Data selection picks a subset of a large instruction-tuning pool. At million scale, random
selection is a strong baseline; token length and diversity are cheap and stable signals.
Output: At scale, random selection is hard to beat, while long and diverse samples help.
The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs.
How vexingly quick daft zebras jump! Sphinx of black quartz, judge my vow.
A tokenizer splits text into tokens; a model predicts the next token from the previous ones.
Cross-entropy, perplexity and instruction-following difficulty are computed from token losses.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 1,000 3.14159 2.71828 -17 +5 1e-8 0x1F 50% $19.99
Dates and times: 2024-10-09, 12:30:45, Monday 3 March 2025, 7 p.m., Q3 FY2024.

def fibonacci(n: int) -> list[int]:
    \"\"\"Return the first n Fibonacci numbers.\"\"\"
    seq = [0, 1]
    while len(seq) < n:
        seq.append(seq[-1] + seq[-2])
    return seq[:n]

class Counter:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, word: str) -> None:
        self.counts[word] = self.counts.get(word, 0) + 1

for i in range(10):
    if i % 2 == 0:
        print(f"{i} is even")
    else:
        print(f"{i} is odd")

import json, os, sys
data = json.loads('{"name": "hf-select", "version": "0.1.0", "tags": ["nlp", "data"]}')
SELECT id, name, COUNT(*) AS n FROM users WHERE age >= 18 GROUP BY id ORDER BY n DESC LIMIT 10;
function greet(name) { return `Hello, ${name}!`; }
const xs = [1, 2, 3].map((x) => x * x).filter((x) => x > 1);
#include <stdio.h>
int main(void) { printf("hello, world\\n"); return 0; }
$ pip install --no-deps package && python -m pytest -q -x
<div class="note"><p>Markdown **bold**, _italic_, `code`, [link](https://example.com).</p></div>
| column | type | null |
|--------|------|------|
| prompt | str  | no   |

Unicode and emoji: café, naïve, façade, jalapeño, Übergröße, smørrebrød, São Paulo, Ελληνικά,
Русский текст, 中文文本, 日本語のテキスト, 한국어 텍스트, العربية, עברית, हिन्दी, ไทย,
emoji 😀 😂 👍 🎉 🚀 ❤️ 👋🏽 🇫🇷 🤖, math ∑ ∫ √ π ≈ ≠ ≤ ≥ ∞ → ←, quotes “ ” ‘ ’ « » — – …
Bonjour, comment ça va ? Très bien, merci. ¿Dónde está la biblioteca? Está cerca del río.
Guten Morgen! Wie geht es Ihnen? Es geht mir gut, danke. Das Wetter ist heute schön.
Ciao, come stai? Sto bene, grazie. Olá, tudo bem? Hej, hur mår du? Cześć, jak się masz?
System: You are a helpful, honest and harmless assistant. Answer concisely and cite sources.
User: Explain gradient descent to a ten-year-old.
Assistant: Imagine you are on a hill in the fog and want to reach the bottom. You feel the ground,
take a small step downhill, and repeat. Gradient descent does the same with numbers: it changes
them a little at a time so the mistake gets smaller and smaller.
User: Translate "good morning" into Spanish, German and Japanese.
Assistant: Spanish: "buenos días"; German: "guten Morgen"; Japanese: "おはようございます".
User: List three prime numbers greater than 100.
Assistant: 101, 103 and 107 are prime numbers greater than 100.
Tabs\tand\tspaces,   multiple   spaces,   and   trailing   tabs\t
and blank lines


then a new paragraph. Don't, can't, won't, it's, they're, we've, I'd, you'll.
"""


def _train_backend(vocab_size: int) -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE(unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(TRAINING_TEXT.splitlines(keepends=True), trainer=trainer)
    return backend


def build_tiny_tokenizer(
    path: str | os.PathLike[str],
    chat_template: bool | str = True,
    add_bos: bool = False,
    vocab_size: int = 1500,
) -> str:
    """Train a tiny byte-level BPE, wrap it in `PreTrainedTokenizerFast`, save it to `path`; returns path.

    `chat_template=True` attaches a ChatML template (a string attaches that Jinja template instead,
    `False` none); `add_bos=True` makes the post-processor prepend `<s>` to every encoding made with
    `add_special_tokens=True`, like Llama's tokenizers.
    """
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    backend = _train_backend(vocab_size)
    if add_bos:
        bos_id = backend.token_to_id(BOS)
        backend.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
        )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=[IM_START, IM_END],
        model_max_length=4096,
    )
    if chat_template:
        tokenizer.chat_template = chat_template if isinstance(chat_template, str) else CHATML_TEMPLATE
    path = os.fspath(path)
    tokenizer.save_pretrained(path)
    return path


def build_tiny_model(
    path: str | os.PathLike[str],
    tokenizer_path: str | os.PathLike[str],
    seed: int = 0,
    *,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
) -> str:
    """Save a seeded Llama causal LM (by default 2 layers, hidden 64, 4 heads, ~0.3M parameters; the MLP
    is twice the hidden size) and the tokenizer from `tokenizer_path` into `path`; returns path."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(os.fspath(tokenizer_path))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.eval()
    path = os.fspath(path)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
