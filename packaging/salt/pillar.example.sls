# Example pillar for the ctsd state (packaging/salt/ctsd). `instances` is the CTS deploy's own
# key (conf/pillar/project.sls), used as it is: ctsd takes name, prefix, currency, port and any
# of its pool settings (workers, command, ...) from each entry and ignores the other keys.
instances:
  turkey: {name: Turkey, prefix: /TR, currency: TRY, port: 8001}
  iraq:   {name: Iraq,   prefix: /IQ, currency: IQD, port: 8002, workers: 8}
  jordan: {name: Jordan, prefix: /JO, currency: JOD, port: 8003}

# Optional: every key has a default in ctsd/map.jinja; dicts are merged over the defaults.
ctsd:
  # From a .deb (salt://, https:// or a path on the minion) ...
  source: deb
  deb: salt://ctsd/files/ctsd_0.1.0-1_amd64.deb
  # ... or from an apt repository (pkgrepo.managed arguments; leave `repo` out when the
  # minion's sources already have the package):
  # source: repo
  # version: 0.1.0-1
  # repo:
  #   name: deb [signed-by=/usr/share/keyrings/cts.gpg] https://apt.example.org/cts bookworm main
  #   file: /etc/apt/sources.list.d/cts.list
  config:
    defaults:
      command: [/var/www/cts/venv/bin/python, -m, cts_preload, "cts.wsgi:application"]
      cwd: /var/www/cts/current
      env: {CTS_MEDIA_ROOT: "/var/www/cts/media/{instance}"}
      programs:
        celery:
          command: [/var/www/cts/venv/bin/celery, -A, cts, worker, -Q, "queue_{instance}", --concurrency, "2"]
          ready: {notify: false, after: 5s}
          stop_timeout: 60s
        beat:
          command: [/var/www/cts/venv/bin/celery, -A, cts, beat, --schedule, "/var/lib/cts/beat-{instance}.db"]
          ready: {notify: false, after: 5s}
          singleton: true
      release:
        - [/var/www/cts/venv/bin/python, manage.py, migrate, --noinput]
    deploy:
      once:
        - [/var/www/cts/venv/bin/python, manage.py, collectstatic, --noinput]
  # Pool settings per instance, over config.defaults.
  instances:
    jordan: {stop_timeout: 45s}
    iraq: {programs: {celery: {workers: 2}}}
  # Each instance's secrets: /etc/cts/secrets/<key>.env, root 0600, its env_file.
  secrets:
    turkey: {DB_PASSWORD: "tr-example", SECRET_KEY: "change-me-tr"}
    iraq: {DB_PASSWORD: "iq-example", SECRET_KEY: "change-me-iq"}
    jordan: {DB_PASSWORD: "jo \"quoted\" $example", SECRET_KEY: "change-me-jo"}
