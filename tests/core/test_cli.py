"""The `gpuplace` command dispatches to its subcommands."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from gpuplace import __version__
from gpuplace.cli import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == f"gpuplace {__version__}"


def test_unknown_command_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as e:
        main(["frobnicate"])
    assert e.value.code == 2


def test_certs_writes_a_serving_pair_with_the_service_name(tmp_path: Path) -> None:
    assert main(["certs", "--out", str(tmp_path), "--namespace", "ns1"]) == 0
    cert = x509.load_pem_x509_certificate((tmp_path / "tls.crt").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "gpuplace.ns1.svc" in sans.get_values_for_type(x509.DNSName)


def test_offline_demo_places_the_sample_workload(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--offline"]) == 0
    out = capsys.readouterr().out
    assert "train-8gpu" in out and "hgx-h100" in out
