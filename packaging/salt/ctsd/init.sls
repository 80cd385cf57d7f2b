{#- ctsd, the CTS supervisor: the package, /etc/cts/ctsd.yaml rendered from the pillar, and the
    service, reloaded (never restarted) when the file changes.
    Pillar: `instances`, as the CTS deploy keeps it (conf/pillar/project.sls), and optionally
    `ctsd` (defaults in map.jinja, example in ../pillar.example.sls). -#}
{%- from "ctsd/map.jinja" import ctsd with context %}

{%- if ctsd.source == 'deb' %}
{%-   if not ctsd.deb %}{{ raise('ctsd: pillar ctsd:source is deb but ctsd:deb names no .deb') }}{% endif %}
ctsd-package:
  pkg.installed:
    - sources:
      - {{ ctsd.package }}: {{ ctsd.deb|tojson }}
{%- elif ctsd.source == 'repo' %}
{%-   if ctsd.repo %}
ctsd-repo:
  pkgrepo.managed:
{%-     for key, value in ctsd.repo.items() %}
    - {{ key }}: {{ value|tojson }}
{%-     endfor %}
    - require_in:
      - pkg: ctsd-package
{%-   endif %}
ctsd-package:
  pkg.installed:
    - name: {{ ctsd.package }}
{%-   if ctsd.version %}
    - version: {{ ctsd.version|tojson }}
{%-   endif %}
{%- else %}
{{ raise('ctsd: pillar ctsd:source must be repo or deb, not ' ~ ctsd.source) }}
{%- endif %}
{#- No watch on the package: its postinst restarts ctsd on an upgrade (the ports stay open
    through systemd's fd store); a reload would keep running the old binary. #}

ctsd-config-dir:
  file.directory:
    - name: /etc/cts
    - user: root
    - group: root
    - mode: '0755'

{%- if ctsd.secrets %}
{#- The instances' secrets, as env_file: root's, 0600 (ctsd refuses anything laxer), written
    before the configuration is checked (ctsd --check reads them), never shown in Salt's
    output. A changed file reloads ctsd, which rolls that instance's programs. #}
ctsd-secrets-dir:
  file.directory:
    - name: {{ ctsd.secrets_dir }}
    - user: root
    - group: root
    - mode: '0700'
{%-   for key in salt['pillar.get']('instances', {}) %}
ctsd-secrets-{{ key }}:
  file.managed:
    - name: {{ ctsd.secrets_dir }}/{{ key }}.env
    - user: root
    - group: root
    - mode: '0600'
    - show_changes: False
    - contents: |
        # Managed by Salt (pillar ctsd:secrets:{{ key }}).
{%-     for name, value in ctsd.secrets.get(key, {}).items() %}
        {{ name }}="{{ value|string|replace('\\', '\\\\')|replace('"', '\\"')|replace('$', '\\$')|replace('\n', '\\n') }}"
{%-     endfor %}
    - require:
      - file: ctsd-secrets-dir
    - require_in:
      - file: ctsd-config
    - watch_in:
      - service: ctsd-service
{%-   endfor %}
{%- endif %}

ctsd-config:
  file.managed:
    - name: /etc/cts/ctsd.yaml
    - source: salt://ctsd/files/ctsd.yaml.jinja
    - template: jinja
    - user: root
    - group: cts
    # Not world-readable: `env` may carry secrets.
    - mode: '0640'
    # Salt writes the new contents to a temporary file in /etc/cts (so that relative paths
    # resolve as they will) and puts it in place only if this exits 0. The installed ctsd
    # checks everything, including that `user`/`group` exist: hence after the package, which
    # creates user cts.
    - check_cmd: /usr/bin/ctsd --check --config
    - tmp_dir: /etc/cts
    - tmp_ext: .yaml
    - require:
      - pkg: ctsd-package
      - file: ctsd-config-dir

# Enabled by a state of its own: a state that changes something itself (enabling the unit)
# skips its watch, so `enable: True` on ctsd-service would leave a running but not yet enabled
# ctsd on its old file when the file changes in the same run.
ctsd-service-enabled:
  service.enabled:
    - name: ctsd
    - require:
      - pkg: ctsd-package

ctsd-service:
  service.running:
    - name: ctsd
    # A changed file is applied with `systemctl reload ctsd` (ExecReload: ctsctl reload):
    # only the instances that changed are touched, and an error fails this state. (Not when
    # this state starts ctsd: it starts on the new file.)
    - reload: True
    - require:
      - pkg: ctsd-package
      - service: ctsd-service-enabled
    - watch:
      - file: ctsd-config
