# Shell helpers shared by bench/run and bench/run-federation (sourced, not run).
# They expect $server_pid to hold the PID of the server being measured.

say() { echo "bench: $*" >&2; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
secret() { head -c 24 /dev/urandom | base64 | tr -d '/+='; }

# SIGTERM, up to 30 s to exit, then SIGKILL.
stop_server() {
  kill -TERM "$server_pid"
  for _ in $(seq 1 300); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$server_pid" 2>/dev/null; then
    say "server $server_pid ignored SIGTERM for 30s; killing it"
    kill -KILL "$server_pid"
  fi
  local status=0
  wait "$server_pid" 2>/dev/null || status=$?
  if [ "$status" != 0 ]; then say "the server exited with status $status after SIGTERM"; fi
  server_pid=""
}

# Synapse's log configuration (root logger at $2, WARNING by default, to the console) into
# $1/log.yaml.
write_synapse_log_config() {
  cat >"$1/log.yaml" <<YAML
version: 1
formatters:
  plain: {format: '%(asctime)s %(levelname)s %(name)s %(message)s'}
handlers:
  console: {class: logging.StreamHandler, formatter: plain}
root: {level: ${2:-WARNING}, handlers: [console]}
disable_existing_loggers: false
YAML
}

# Every Synapse rate limit far above the load, as homeserver.yaml lines: Synapse has no
# single switch for "off".
synapse_unlimited_rate_limits() {
  local unlimited="{per_second: 1000000, burst_count: 1000000}"
  cat <<YAML
rc_message: $unlimited
rc_registration: $unlimited
rc_registration_token_validity: $unlimited
rc_login:
  address: $unlimited
  account: $unlimited
  failed_attempts: $unlimited
rc_joins:
  local: $unlimited
  remote: $unlimited
rc_joins_per_room: $unlimited
rc_invites:
  per_room: $unlimited
  per_user: $unlimited
  per_issuer: $unlimited
rc_third_party_invite: $unlimited
rc_3pid_validation: $unlimited
rc_admin_redaction: $unlimited
rc_key_requests: $unlimited
rc_media_create: $unlimited
rc_presence:
  per_user: $unlimited
rc_delayed_event_mgmt: $unlimited
rc_room_creation: $unlimited
rc_reports: $unlimited
rc_user_directory: $unlimited
rc_profile: $unlimited
rc_federation:
  window_size: 1000
  sleep_limit: 1000000
  sleep_delay: 0
  reject_limit: 1000000
  concurrent: 1000000
YAML
}
