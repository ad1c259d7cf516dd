"""Parse kickstarts with pykickstart (RHEL9) and print, one JSON line per
file, what the tests compare: the commands seen, the scripts, and the
values the stock template takes from params; or the parse error."""
import json
import sys

from pykickstart.parser import KickstartParser
from pykickstart.version import makeVersion

for path in sys.argv[1:]:
    h = makeVersion("RHEL9")
    try:
        KickstartParser(h).readKickstart(path)
    except Exception as e:  # every pykickstart error is a refusal here
        print(json.dumps({"error": str(e)}))
        continue
    seen = sorted({name for name, c in h.commands.items() if getattr(c, "seen", False)})
    print(json.dumps({
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
    }))
