"""Public Suffix List reader: rule kinds, sections, IDN rules, errors, the real Debian file."""

from __future__ import annotations

from pathlib import Path

import pytest

from authmilter.errors import ConfigError
from authmilter.psl import PublicSuffixList

DATA = Path(__file__).resolve().parent.parent / "data" / "psl"
DEBIAN_PSL = Path("/usr/share/publicsuffix/public_suffix_list.dat")


@pytest.fixture(scope="module")
def psl() -> PublicSuffixList:
    return PublicSuffixList.load(DATA / "small.dat")


@pytest.mark.parametrize(
    ("domain", "org"),
    [
        # normal rules
        ("example.com", "example.com"),
        ("a.b.example.com", "example.com"),
        ("mail.example.co.uk", "example.co.uk"),
        ("example.uk", "example.uk"),
        # a public suffix is its own organizational domain
        ("com", "com"),
        ("co.uk", "co.uk"),
        # the implicit "*" rule for unlisted TLDs
        ("a.b.example.test", "example.test"),
        ("test", "test"),
        # wildcard and exception rules
        ("a.b.foo.ck", "b.foo.ck"),
        ("foo.ck", "foo.ck"),  # foo.ck is a public suffix (*.ck)
        ("www.ck", "www.ck"),  # !www.ck: www.ck is registrable
        ("a.www.ck", "www.ck"),
        ("a.b.foo.kawasaki.jp", "b.foo.kawasaki.jp"),
        ("x.city.kawasaki.jp", "city.kawasaki.jp"),
        ("example.jp", "example.jp"),
        # private section
        ("alice.github.io", "alice.github.io"),
        ("a.alice.github.io", "alice.github.io"),
        ("x.blogspot.co.uk", "x.blogspot.co.uk"),
        # IDN rule (file has U-labels) against A-label and U-label input
        ("a.xn--e1afmkfd.xn--p1ai", "xn--e1afmkfd.xn--p1ai"),
        ("a.пример.рф", "xn--e1afmkfd.xn--p1ai"),
        # case, trailing dot
        ("Mail.EXAMPLE.com.", "example.com"),
        # "org   some trailing text": the rule ends at white space
        ("a.example.org", "example.org"),
    ],
)
def test_org_domain(psl: PublicSuffixList, domain: str, org: str) -> None:
    assert psl.org_domain(domain) == org


def test_public_suffix(psl: PublicSuffixList) -> None:
    assert psl.public_suffix("a.example.co.uk") == "co.uk"
    assert psl.public_suffix("a.b.foo.ck") == "foo.ck"
    assert psl.public_suffix("a.www.ck") == "ck"


def test_icann_only_drops_private_rules() -> None:
    icann = PublicSuffixList.load(DATA / "small.dat", icann_only=True)
    assert icann.org_domain("a.alice.github.io") == "github.io"
    assert icann.org_domain("x.blogspot.co.uk") == "blogspot.co.uk"


def test_version_comment(psl: PublicSuffixList) -> None:
    assert psl.version == "2024-01-01_00-00-00_UTC"
    assert psl.path.endswith("small.dat")


def test_immutable(psl: PublicSuffixList) -> None:
    with pytest.raises(AttributeError):
        psl.rules = frozenset()  # type: ignore[misc]
    assert isinstance(psl.rules, frozenset)


def test_missing_file_is_config_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.dat"
    with pytest.raises(ConfigError) as info:
        PublicSuffixList.load(path)
    assert str(path) in str(info.value)
    assert info.value.exit_code == 78


def test_directory_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=str(tmp_path)):
        PublicSuffixList.load(tmp_path)


def test_file_without_rules_is_config_error() -> None:
    with pytest.raises(ConfigError, match="no public suffix rules"):
        PublicSuffixList.load(DATA / "empty.dat")


def test_not_utf8_is_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.dat"
    path.write_bytes(b"com\n\xff\xfe\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        PublicSuffixList.load(path)


@pytest.fixture(scope="module")
def debian_psl() -> PublicSuffixList:
    if not DEBIAN_PSL.exists():
        pytest.skip("Debian package publicsuffix not installed")
    return PublicSuffixList.load(DEBIAN_PSL)


@pytest.mark.parametrize(
    ("domain", "org"),
    [
        ("www.example.com", "example.com"),
        ("news.bbc.co.uk", "bbc.co.uk"),
        ("a.b.example.kawasaki.jp", "b.example.kawasaki.jp"),
        ("x.city.kawasaki.jp", "city.kawasaki.jp"),
        ("www.ck", "www.ck"),
        ("foo.bar.ck", "foo.bar.ck"),
        ("alice.github.io", "alice.github.io"),
        ("mail.xn--80aswg.xn--p1ai", "xn--80aswg.xn--p1ai"),
        ("com", "com"),
    ],
)
def test_real_debian_list(debian_psl: PublicSuffixList, domain: str, org: str) -> None:
    assert debian_psl.org_domain(domain) == org
