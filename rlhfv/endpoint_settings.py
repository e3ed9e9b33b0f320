"""The settings of every command that calls a model behind an OpenAI-compatible endpoint (`rlhfv eval judge`,
`rlhfv eval mmhal judge`, `rlhfv eval object-halbench score --extract llm`), read by `data_tools.settings` as every
other command's settings are.

There is deliberately no `--api-key`: a key on the command line ends up in shell history and `ps`. The flag exists
only to refuse, with the fix, without echoing the key. Keys come from `--api_key_env` or `--api_key_file`.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from typing import ClassVar

from data_tools.settings import check_range
from rlhfv.endpoint_types import DEFAULT_BASE_URL


@dataclass
class EndpointSettings:
    """The endpoint of a judge model (`model_env`: the variable naming the model when --model is not given)."""

    model_env: ClassVar[str] = "RLHFV_JUDGE_MODEL"

    base_url: str | None = field(
        default=None,
        metadata={
            "help": "Endpoint base URL, e.g. http://localhost:8000/v1 (default: $OPENAI_BASE_URL, else "
            f"{DEFAULT_BASE_URL})."
        },
    )
    model: str | None = field(default=None, metadata={"help": "Judge model name (default: $RLHFV_JUDGE_MODEL)."})
    api_key_env: str = field(
        default="OPENAI_API_KEY",
        metadata={"help": "Environment variable holding the API key (none needed for local servers)."},
    )
    api_key_file: str | None = field(
        default=None, metadata={"help": "File whose first line is the API key (wins over --api_key_env)."}
    )
    cache_dir: str | None = field(
        default=None,
        metadata={"help": "Reply cache (default: $XDG_CACHE_HOME/rlhfv/endpoint or ~/.cache/rlhfv/endpoint)."},
    )
    no_cache: bool = field(default=False, metadata={"help": "Neither read nor write the reply cache."})
    concurrency: int = field(default=4, metadata={"aliases": ("--workers",), "help": "Requests in flight at once."})
    max_retries: int = field(
        default=5, metadata={"help": "Retries on 408/409/429/5xx and connection errors, with exponential backoff."}
    )
    timeout: float = field(default=120.0, metadata={"help": "Seconds per attempt."})

    def __post_init__(self):
        check_range("timeout", self.timeout, above=0)  # nan and inf too: a timeout that never fires hangs the run
        check_range("max_retries", self.max_retries, minimum=0)
        check_range("concurrency", self.concurrency, minimum=1)

    def model_name(self) -> str | None:
        return self.model or os.environ.get(self.model_env)

    def client(self):
        """An `EndpointClient` for these settings; EndpointError without a model name or on bad values."""
        # rlhfv.endpoint (and openai) load only when a command calls the endpoint: `rlhfv --help` stays instant
        from rlhfv.endpoint import EndpointClient, EndpointConfig, EndpointError, default_cache_dir

        model = self.model_name()
        if not model:
            raise EndpointError(f"no model: pass --model NAME or set {self.model_env}")
        try:
            config = EndpointConfig(
                base_url=self.base_url,
                model=model,
                api_key_env=self.api_key_env,
                api_key_file=self.api_key_file,
                cache_dir=None if self.no_cache else (self.cache_dir or default_cache_dir()),
                timeout=self.timeout,
                max_retries=self.max_retries,
                concurrency=self.concurrency,
            )
        except ValueError as error:
            raise EndpointError(str(error)) from None
        return EndpointClient(config)


class _RefuseKeyOnCommandLine(argparse.Action):
    """`--api-key` fails with the fix, without echoing the key (it would sit in shell history and `ps`)."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(
            "API keys are not taken on the command line (they end up in shell history and process lists): put the "
            "key in $OPENAI_API_KEY, another variable named by --api-key-env, or a file named by --api-key-file"
        )


def refuse_api_key_flag(parser) -> None:
    """The hidden `--api-key` that only refuses; added beside the settings' own flags."""
    parser.add_argument("--api-key", "--api_key", nargs="?", action=_RefuseKeyOnCommandLine, help=argparse.SUPPRESS)
