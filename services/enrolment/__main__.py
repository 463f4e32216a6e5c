from services.enrolment.app import MIGRATIONS, build_api, build_worker
from services.enrolment.settings import Settings
from shared.runtime import main

raise SystemExit(main(Settings(), MIGRATIONS, build_api, build_worker))
