from services.billing.app import MIGRATIONS, build_api, build_worker
from services.billing.settings import Settings
from shared.runtime import main

raise SystemExit(main(Settings(), MIGRATIONS, build_api, build_worker))
