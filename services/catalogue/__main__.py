from services.catalogue.app import MIGRATIONS, build_api, build_worker
from services.catalogue.settings import Settings
from shared.runtime import main

raise SystemExit(main(Settings(), MIGRATIONS, build_api, build_worker))
