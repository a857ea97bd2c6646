from __future__ import annotations

import pytest

from plancheck.core.redact import MASK, named_error_line, redact, redact_urls, url_secrets

NEEDLE = "S3cr3t-Needle-42"


@pytest.mark.parametrize(
    "text, expected",
    [
        (f"postgresql://alice:{NEEDLE}@db:5432/app", "postgresql://alice:***@db:5432/app"),
        (f"postgresql+psycopg://alice:{NEEDLE}@db/app", "postgresql+psycopg://alice:***@db/app"),
        (f"failed: postgres://bob:{NEEDLE}@10.0.0.1/x (timeout)", "failed: postgres://bob:***@10.0.0.1/x (timeout)"),
        (f"host=db user=alice password={NEEDLE} dbname=app", "host=db user=alice password=*** dbname=app"),
        (f"host=db password='{NEEDLE} x' port=5", "host=db password=*** port=5"),
        ("postgresql://root@127.0.0.1:5432/test", "postgresql://root@127.0.0.1:5432/test"),
        ("postgresql://alice:@db/app", "postgresql://alice:***@db/app"),
    ],
)
def test_redact_urls_masks_passwords_only(text: str, expected: str) -> None:
    assert redact_urls(text) == expected


def test_redact_removes_given_secrets_everywhere() -> None:
    text = f"auth failed for alice ({NEEDLE}); retry with {NEEDLE}"
    assert redact(text, NEEDLE) == f"auth failed for alice ({MASK}); retry with {MASK}"


def test_redact_ignores_empty_secrets_and_prefers_longest() -> None:
    assert redact("abc abcdef", "", "abc", "abcdef") == f"{MASK} {MASK}"


def test_url_secrets_gives_raw_and_decoded_password() -> None:
    secrets = url_secrets("postgresql+psycopg://alice:p%40ss%2Fw@db/app")
    assert {"p%40ss%2Fw", "p@ss/w"} <= set(secrets)
    assert NEEDLE not in redact(f"login p@ss/w and p%40ss%2Fw {NEEDLE}", *secrets, NEEDLE)


def test_url_secrets_without_password() -> None:
    assert url_secrets("postgresql://root@127.0.0.1/test") == ()
    assert url_secrets("not a url") == ()


def test_named_error_line_names_the_driver_error_and_masks_its_first_line() -> None:
    class DriverError(Exception):
        pass

    class WrapperError(Exception):
        orig = DriverError("connect to postgresql://u:s3cr%40t@h/db failed\nDETAIL: password s3cr@t")

    assert named_error_line(WrapperError("ignored")) == "DriverError: connect to postgresql://u:***@h/db failed"
    assert named_error_line(ValueError(), "x") == "ValueError: ValueError"
