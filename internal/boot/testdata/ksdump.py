"""Parse kickstarts with pykickstart (RHEL9) and print, one JSON line per
file (named as arguments, or with --serve one per line on stdin), what the tests compare: the commands seen, the scripts, and the
values the stock template takes from params; or the parse error."""
import json
import sys

from pykickstart.parser import KickstartParser
from pykickstart.version import makeVersion



def dump(path):
    h = makeVersion("RHEL9")
    try:
        KickstartParser(h).readKickstart(path)
    except Exception as e:  # every pykickstart error is a refusal here
        return {"error": str(e)}
    seen = sorted({name for name, c in h.commands.items() if getattr(c, "seen", False)})
    return {
        "commands": seen,
        "scripts": [[int(s.type), s.script] for s in h.scripts],
        "timezone": h.timezone.timezone,
        "onlyuse": h.ignoredisk.onlyuse,
        "rootpw": h.rootpw.password,
        "url": h.url.url,
        "repos": [r.baseurl for r in h.repo.repoList],
        "proxy": h.url.proxy,
        "sshkeys": [k.key for k in h.sshkey.sshUserList],
        "ntp": [t.ntp_server for t in h.timesource.dataList()],
    }


# With --serve, paths come one per line on stdin and each answer is flushed
# at once: a fuzz run parses thousands of kickstarts, and starting Python
# with pykickstart for each would dominate its time.
if sys.argv[1:] == ["--serve"]:
    for line in sys.stdin:
        print(json.dumps(dump(line.rstrip("\n"))), flush=True)
else:
    for path in sys.argv[1:]:
        print(json.dumps(dump(path)))
