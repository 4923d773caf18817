"""Start-up checks: network file systems (from a fake mountinfo), state dir, port."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

from feedsvc import preflight

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:40 / /mnt/share rw,relatime shared:9 - nfs4 server:/export rw,vers=4.2
31 30 0:41 / /mnt/share/local rw,relatime shared:10 - tmpfs tmpfs rw
32 22 0:42 / /srv/my\\040files rw,relatime shared:11 - cifs //nas/files rw
33 22 0:43 / /home/ann/remote rw,nosuid shared:12 - fuse.sshfs ann@host:/ rw
34 22 0:44 / /mnt/share2 rw shared:13 - ext4 /dev/sdb1 rw
"""


@pytest.fixture
def mountinfo(tmp_path: Path) -> str:
    path = tmp_path / "mountinfo"
    path.write_text(MOUNTINFO)
    return str(path)


@pytest.mark.parametrize(("path", "kind"), [
    ("/var/lib/feedsvc", "ext4"),
    ("/mnt/share", "nfs4"),
    ("/mnt/share/feedsvc/state", "nfs4"),          # not yet created: the mount holding it
    ("/mnt/share/local/state", "tmpfs"),           # the longest mount point wins
    ("/mnt/share2/state", "ext4"),                 # a prefix of the name is not a parent
    ("/srv/my files/state", "cifs"),               # \040 in mountinfo is a space
    ("/home/ann/remote/x", "fuse.sshfs"),
])
def test_file_system_type_from_mountinfo(mountinfo, path, kind):
    assert preflight.file_system_type(path, mountinfo) == kind


def test_no_mountinfo_means_unknown(tmp_path):
    assert preflight.file_system_type("/x", str(tmp_path / "missing")) is None


@pytest.mark.parametrize("path", ["/mnt/share/feedsvc", "/srv/my files/state",
                                  "/home/ann/remote/state"])
def test_a_state_dir_on_a_network_file_system_is_refused(mountinfo, path):
    with pytest.raises(preflight.PreflightError) as e:
        preflight.check_state_dir(path, "FEEDSVC_STATE_DIR", mountinfo)
    assert str(e.value).startswith(f"state directory {path} is on a network file system")
    assert "FEEDSVC_STATE_DIR" in str(e.value)
    assert not Path(path).exists()


def test_a_state_dir_that_cannot_be_created_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    path = tmp_path / "file" / "state"
    with pytest.raises(preflight.PreflightError) as e:
        preflight.check_state_dir(str(path), "--state-dir")
    assert str(e.value) == (f"state directory {path} cannot be created or written (Not a "
                            "directory); fix its permissions or choose another with --state-dir")
    preflight.check_state_dir(str(tmp_path / "state"), "--state-dir")
    assert (tmp_path / "state").is_dir() and not any((tmp_path / "state").iterdir())


def test_a_port_in_use_is_refused_and_a_free_one_passes():
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(preflight.PreflightError) as e:
            preflight.check_port("127.0.0.1", port, "--port", "--host")
        assert str(e.value).startswith(f"port {port} is in use on 127.0.0.1")
    preflight.check_port("127.0.0.1", port, "--port", "--host")


def test_a_host_that_is_no_address_is_refused():
    with pytest.raises(preflight.PreflightError) as e:
        preflight.check_port("no such host.invalid", 8000, "--port", "FEEDSVC_HOST")
    assert "FEEDSVC_HOST" in str(e.value)
