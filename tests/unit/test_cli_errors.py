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


@pytest.mark.parametrize("argv", [
    ["plan", "examples/demo.yaml", "--api", UNREACHABLE],
    ["apply", "examples/demo.yaml", "--api", UNREACHABLE],
    ["status", "--api", UNREACHABLE],
    ["topo", "--api", UNREACHABLE],
    ["trace", "--api", UNREACHABLE, "--from", "blue/web1", "--to-ip", "10.0.0.3"],
])
def test_an_unreachable_controller_is_a_runtime_error_in_one_line(argv, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"netvirt: error: cannot reach the controller at http://{UNREACHABLE}")
    assert len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("command", ["validate", "plan", "apply", "lab up", "lab matrix"])
def test_a_missing_file_is_a_validation_error_naming_it(command, capsys, tmp_path):
    missing = tmp_path / "nope.yaml"
    assert main([*command.split(), str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{missing}:1:1: cannot read file") and "Traceback" not in err


def test_version_and_help_answer_without_a_controller(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("netvirt ")
    with pytest.raises(SystemExit) as e:
        main(["trace", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "the VM port the packet leaves" in out and "(default: " in out
