"""The charset a ``Content-Type`` names, for decoding a body as text (requests and responses)."""

from __future__ import annotations

__all__ = ["charset"]


def charset(content_type: str | None) -> str:
    """The ``charset`` parameter of ``content_type`` (RFC 9110 §8.3.2), if Python knows it as a
    text encoding; else UTF-8, the default for the types a JSON API meets (RFC 8259 §8.1).

    An unknown or bogus charset falls back rather than fail: the text is still readable
    (decoded with replacement characters where needed), and a peer cannot make
    ``text()`` raise ``LookupError`` by naming a charset that does not exist.

    >>> charset('text/plain; charset="ISO-8859-1"'), charset("text/plain; charset=bogus")
    ('ISO-8859-1', 'utf-8')
    """
    if content_type:
        for param in content_type.split(";")[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "charset" and value.strip():
                name = value.strip().strip('"')
                try:
                    "".encode(name)  # (LookupError too for codecs that are not text encodings)
                except LookupError:
                    break
                return name
    return "utf-8"
