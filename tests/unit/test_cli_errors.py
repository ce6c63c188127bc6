"""Bad input to every command ends in one line that names the flag or file, exit 2 for a
usage or validation error and 1 for a runtime one, and never a traceback."""
import pytest

from netvirt.cli import main

UNREACHABLE = "127.0.0.1:9"  # discard port: nothing listens


@pytest.mark.parametrize("argv, flag", [
    (["topo", "--watch", "-1"], "--watch"),
    (["topo", "--watch", "0"], "--watch"),
    (["trace", "--from", "blue/web1", "--to-ip", "10.0.0.3", "--tcp-dst", "70000"], "--tcp-dst"),
    (["trace", "--from", "blue/web1", "--to-ip", "10.0.0.3", "--udp-dst", "-5"], "--udp-dst"),
    (["trace", "--from", "blue/web1", "--to-ip", "10.0.0.3", "--src-mac", "zz"], "--src-mac"),
    (["trace", "--from", "blue/web1", "--to-ip", "10.0.0.3", "--src-ip", "bad"], "--src-ip"),
    (["trace", "--from", "blue/web1", "--to-ip", "10.0.0.300"], "--to-ip"),
    (["controller", "--openflow", "172.30.0.1:6653"], "--openflow"),
    (["controller", "--audit-interval", "0"], "--audit-interval"),
    (["status", "--api", "ftp://x"], "--api"),
    (["apply", "examples/demo.yaml", "--timeout", "-3"], "--timeout"),
    (["node", "--interval", "nan?"], "--interval"),
])
def test_a_bad_flag_is_a_usage_error_naming_it(argv, flag, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"argument {flag}" in err and "Traceback" not in err, err


def test_a_url_for_the_api_is_taken_as_its_address(capsys):
    assert main(["status", "--api", f"http://{UNREACHABLE}/"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"netvirt: error: cannot reach the controller at http://{UNREACHABLE}:")
    assert "http://http://" not in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("content, code, message", [
    (None, 2, "cannot read file"),
    (b"hypervisors: [\xff]\n", 2, "not UTF-8 text"),
    (b"hypervisors: 2021-13-45\n", 2, "is not a valid timestamp"),
])
def test_validate_reports_bad_files_with_a_location(tmp_path, capsys, content, code, message):
    path = tmp_path / "t.yaml"
    if content is not None:
        path.write_bytes(content)
    assert main(["validate", str(path)]) == code
    err = capsys.readouterr().err
    assert err.startswith(f"{path}:1:") and message in err and "Traceback" not in err, err
