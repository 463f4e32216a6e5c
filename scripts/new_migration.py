"""Autogenerate a migration for one service against a scratch SQLite database at head.

python scripts/new_migration.py enrolment "add waitlist index"
"""

import subprocess
import sys
import tempfile
from pathlib import Path

from alembic import command

from shared.migrate import alembic_config, upgrade


def main() -> None:
    service, message = sys.argv[1], sys.argv[2]
    migrations = Path("services") / service / "migrations"
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/scratch.db"
        upgrade(migrations, url)
        config = alembic_config(migrations, url)
        rev_id = f"{len(list((migrations / 'versions').glob('*.py'))) + 1:04d}"
        command.revision(config, message=message, autogenerate=True, rev_id=rev_id)
    subprocess.run([sys.executable, "-m", "ruff", "format", "-q", str(migrations / "versions")], check=True)


if __name__ == "__main__":
    main()
