"""Print the project's requirements (its dependencies and the named extras) from pyproject.toml,
one per line, so the image installs them in a layer that only pyproject.toml and the lock file
invalidate; the project itself is installed after, without dependencies. Why: a change to the
source then rebuilds in seconds instead of reinstalling every dependency (minutes)."""

import sys
import tomllib

with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)["project"]
lines = list(project["dependencies"])
for extra in sys.argv[2:]:
    lines += project["optional-dependencies"][extra]
print("\n".join(lines))
