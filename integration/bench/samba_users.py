"""Creates lab users PREFIX000.. (password <user>-Pw1, no expiry) in the Samba lab DC in DIR.

Run with Debian's /usr/bin/python3 (Samba's bindings live there): writes through the DC's
own sam.ldb as `samba-tool user create` does, but in one process (100 users in well under a
second instead of a python start-up each).
    /usr/bin/python3 samba_users.py DIR PREFIX COUNT
"""
import sys

from samba.auth import system_session
from samba.param import LoadParm
from samba.samdb import SamDB

d, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
lp = LoadParm()
lp.load(f"{d}/etc/smb.conf")
db = SamDB(url=f"{d}/private/sam.ldb", session_info=system_session(), lp=lp)
for i in range(count):
    user = f"{prefix}{i:03}"
    db.newuser(user, f"{user}-Pw1", useusernameascn=True)
    db.setexpiry(f"(sAMAccountName={user})", 0, no_expiry_req=True)
print(f"{count} users")
