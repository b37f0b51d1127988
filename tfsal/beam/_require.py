"""The optional dependency: apache-beam, imported only by `tfsal.beam`."""

from __future__ import annotations

from tfsal.errors import TfsalError

INSTALL = 'pip install "tfsal[beam]"'


def require_beam():
    """The `apache_beam` module, or a TfsalError saying how to install it."""
    try:
        import apache_beam
    except ImportError as exc:
        raise TfsalError(f"expected apache-beam installed for tfsal.beam and "
                         f"'tfsal explain --runner', received an import error ({exc}); "
                         f"install it with: {INSTALL}") from None
    return apache_beam
