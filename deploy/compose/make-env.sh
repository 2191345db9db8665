#!/usr/bin/env bash
# Prints a .env for docker-compose.yml with a fresh random value for every secret:
#   deploy/compose/make-env.sh > .env && docker compose up --build
set -euo pipefail
rand() { head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '='; }
cat <<EOT
FERRY_ADMIN_TOKEN=$(rand)
FERRY_AGENT_SECRET=$(rand)
FERRY_CP_STORE_TOKEN=$(rand)
FERRY_STORE_TOKEN_HOST_A=$(rand)
FERRY_STORE_TOKEN_HOST_B=$(rand)
S3_ACCESS_KEY_ID=ferry
S3_SECRET_ACCESS_KEY=$(rand)
EOT
