"""The context object Lambda passes a handler, as far as our handlers (and Powertools' logger) read it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LambdaContext:
    function_name: str = "test"
    memory_limit_in_mb: int = 256
    aws_request_id: str = "req-1"
    remaining_time_in_millis: int = 120_000

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:111111111111:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_time_in_millis
