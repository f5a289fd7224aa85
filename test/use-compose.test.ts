// docker/compose.yaml: validated and resolved by `docker-compose config` (Debian's docker-compose 1.29,
// which checks the file against the Compose schema without a Docker engine), then checked against the
// CLI and the other files: the server serves the run `train` writes, from the same volume, after it; the
// Prometheus it starts scrapes the server's /metrics; the Grafana dashboard's queries name metrics the
// server exports.
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { flagSpecs } from '../src/config.js';

const REPO = resolve(import.meta.dirname, '..');
const DOCKER = join(REPO, 'docker');
const { version } = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string };

const probe = spawnSync('docker-compose', ['version'], { encoding: 'utf8' });
const noCompose =
  probe.error || probe.status !== 0 ? 'docker-compose is not installed (apt-get install docker-compose)' : '';
if (noCompose) console.warn(`docker/compose.yaml not validated: ${noCompose}`);

interface ComposeService {
  image: string;
  entrypoint?: string[];
  command?: string[];
  depends_on?: Record<string, { condition: string }>;
  ports?: Array<{ published: number | string; target: number }>;
  volumes?: Array<string | { source: string; target: string; read_only?: boolean }>;
  healthcheck?: { test: string[] };
  read_only?: boolean;
  cap_drop?: string[];
}

function config(file: string, env: Record<string, string> = {}) {
  return spawnSync('docker-compose', ['-f', file, 'config'], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    cwd: REPO,
  });
}

function mounts(service: ComposeService): Array<{ source: string; target: string; readOnly: boolean }> {
  return (service.volumes ?? []).map((v) => {
    if (typeof v !== 'string') return { source: v.source, target: v.target, readOnly: !!v.read_only };
    const [source = '', target = '', mode = ''] = v.split(':');
    return { source, target, readOnly: mode === 'ro' };
  });
}

describe.skipIf(noCompose)('docker/compose.yaml', () => {
  const result = config(join(DOCKER, 'compose.yaml'));
  const compose = parseYaml(result.stdout ?? '') as { services: Record<string, ComposeService> };

  it('is valid (docker-compose config) and has train, serve, prometheus and grafana', () => {
    expect(result.status, result.stderr).toBe(0);
    expect(Object.keys(compose.services).sort()).toEqual(['grafana', 'prometheus', 'serve', 'train']);
    // The validation bites: an unknown key fails.
    const bad = execFileSync('node', [
      '-e',
      'process.stdout.write(require("fs").readFileSync(process.argv[1], "utf8").replace("  serve:\\n", "  serve:\\n    restart_policy: always\\n"))',
      join(DOCKER, 'compose.yaml'),
    ]);
    const invalid = spawnSync('docker-compose', ['-f', '-', '--project-directory', DOCKER, 'config'], {
      input: bad,
      encoding: 'utf8',
    });
    expect(invalid.status).not.toBe(0);
    expect(invalid.stderr).toMatch(/restart_policy/);
  });

  it('trains a run into the volume, then serves that run from it, read-only', () => {
    const { train, serve } = compose.services as Record<string, ComposeService>;
    expect(train!.image).toBe(`image-classifier:${version}`);
    expect(serve!.image).toBe(train!.image);
    expect(config(join(DOCKER, 'compose.yaml'), { IMAGE_TAG: 'dev' }).stdout).toContain(
      'image: image-classifier:dev',
    );
    const script = train!.command!.join(' ');
    const experiment = /--experiment-name (\S+)/.exec(script)?.[1];
    const run = /--run-name (\S+)/.exec(script)?.[1];
    // Trained once: a second `up` finds the run and does not train (the trainer refuses an existing run).
    expect(script).toContain(`test -f /experiments/${experiment}/${run}/run.json ||`);
    const known = new Set(flagSpecs().map((s) => `--${s.flag}`));
    for (const flag of script.match(/(?<=\s)--[a-z][a-z-]*/g) ?? []) expect(known, flag).toContain(flag);
    expect(serve!.command!.slice(0, 2)).toEqual(['serve', `${experiment}/${run}`]);
    expect(serve!.command).toEqual(expect.arrayContaining(['--host', '0.0.0.0']));
    expect(serve!.depends_on).toEqual({ train: { condition: 'service_completed_successfully' } });
    const trainExperiments = mounts(train!).find((m) => m.target === '/experiments')!;
    const serveExperiments = mounts(serve!).find((m) => m.target === '/experiments')!;
    expect(serveExperiments.source).toBe(trainExperiments.source);
    expect(serveExperiments.readOnly).toBe(true);
    for (const service of [train!, serve!]) {
      expect(service.read_only).toBe(true);
      expect(service.cap_drop).toEqual(['ALL']);
    }
    const port = serve!.command![serve!.command!.indexOf('--port') + 1];
    expect(serve!.ports).toEqual([expect.objectContaining({ published: 8080, target: Number(port) })]);
    expect(serve!.healthcheck!.test.join(' ')).toContain(`http://127.0.0.1:${port}/healthz`);
  });

  it('Prometheus scrapes the server; Grafana reads Prometheus and loads the dashboard', () => {
    const prometheus = parseYaml(readFileSync(join(DOCKER, 'prometheus.yml'), 'utf8')) as {
      scrape_configs: Array<{ metrics_path: string; static_configs: Array<{ targets: string[] }> }>;
    };
    const serve = compose.services.serve!;
    const port = serve.command![serve.command!.indexOf('--port') + 1];
    expect(prometheus.scrape_configs).toEqual([
      expect.objectContaining({ metrics_path: '/metrics', static_configs: [{ targets: [`serve:${port}`] }] }),
    ]);
    expect(mounts(compose.services.prometheus!)).toContainEqual({
      source: join(DOCKER, 'prometheus.yml'),
      target: '/etc/prometheus/prometheus.yml',
      readOnly: true,
    });
    for (const name of ['prometheus', 'grafana'])
      expect(compose.services[name]!.image, name).toMatch(/^[\w/.-]+:v?\d+\.\d+\.\d+$/);
    const datasources = parseYaml(
      readFileSync(join(DOCKER, 'grafana/provisioning/datasources/prometheus.yaml'), 'utf8'),
    ) as { datasources: Array<{ uid: string; url: string }> };
    expect(datasources.datasources[0]).toMatchObject({ uid: 'prometheus', url: 'http://prometheus:9090' });
    const providers = parseYaml(
      readFileSync(join(DOCKER, 'grafana/provisioning/dashboards/dashboards.yaml'), 'utf8'),
    ) as { providers: Array<{ options: { path: string } }> };
    expect(mounts(compose.services.grafana!)).toContainEqual({
      source: join(DOCKER, 'grafana/dashboards'),
      target: providers.providers[0]!.options.path,
      readOnly: true,
    });
  });

  it('the dashboard charts request rate, latency quantiles, batch sizes and classes from metrics the server exports', () => {
    const dashboard = JSON.parse(
      readFileSync(join(DOCKER, 'grafana/dashboards/image-classifier.json'), 'utf8'),
    ) as {
      panels: Array<{ title: string; targets: Array<{ expr: string; datasource: { uid: string } }> }>;
    };
    const exprs = dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr));
    for (const target of dashboard.panels.flatMap((p) => p.targets))
      expect(target.datasource.uid).toBe('prometheus');
    const text = exprs.join('\n');
    expect(text).toContain('rate(image_classifier_http_requests_total');
    expect(text).toMatch(
      /histogram_quantile\(0\.99, [^\n]*image_classifier_http_request_duration_seconds_bucket/,
    );
    expect(text).toContain('image_classifier_inference_batch_size_bucket');
    expect(text).toContain('image_classifier_model_info');
    // Every metric the dashboard names is one the server's code writes (histograms: their base name).
    const source = readdirSync(join(REPO, 'src/serving'), { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.ts'))
      .map((f) => readFileSync(join(REPO, 'src/serving', f), 'utf8'))
      .join('\n');
    const metrics = new Set(text.match(/image_classifier_\w+/g));
    for (const metric of metrics) {
      const base = metric.replace(/_(bucket|sum|count)$/, '').replace(/^image_classifier/, '');
      expect(source, metric).toContain(base);
    }
  });
});
