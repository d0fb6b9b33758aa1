#!/usr/bin/env bash
# Entrypoint of the local RabbitMQ image: the official image's behaviour,
# reduced to what cmdtrack's tests and docker-compose.yml use.
set -euo pipefail

# Started as root (the default), the server and its tools step down to the
# rabbitmq user, after handing it a fresh data volume.
if [[ "${1:-}" == rabbitmq* && "$(id -u)" == 0 ]]; then
	if [[ "$1" == rabbitmq-server ]]; then
		find /var/lib/rabbitmq \! -user rabbitmq -exec chown rabbitmq:rabbitmq '{}' +
	fi
	exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups "${BASH_SOURCE[0]}" "$@"
fi

# If long and short host names differ, the node needs a long name.
if [[ -z "${RABBITMQ_USE_LONGNAME:-}" && "$(hostname)" != "$(hostname -s)" ]]; then
	export RABBITMQ_USE_LONGNAME=true
fi

exec "$@"
