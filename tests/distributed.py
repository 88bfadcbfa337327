"""Shared by the 2-process (gloo, CPU) launch tests of train-rm and rl: a skip marker and a free port."""

from __future__ import annotations

import socket

import pytest


def needs_gloo():
    """``pytestmark`` for a module that launches torch.distributed processes on CPU."""
    import torch

    return pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                              reason="torch.distributed with the gloo backend is not available")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the launcher's rendezvous port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
