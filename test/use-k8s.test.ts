// k8s/: every kustomize overlay (and the optional components) rendered with `kubectl kustomize` and
// validated against the Kubernetes OpenAPI schemas (kubernetes-models, generated from Kubernetes 1.33;
// the ServiceMonitor against the prometheus-operator CRD's schema, @kubernetes-models/prometheus-operator),
// then checked against the CLI and each other: flags the CLI has, the run the server serves is the one a
// Job trains, probes hit /healthz on the port the server listens on, every pod hardened the same way,
// images pinned to the package version, the sweep's completions its number of trials.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { Service } from 'kubernetes-models/v1/Service';
import { PersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { Job } from 'kubernetes-models/batch/v1/Job';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import { flagSpecs } from '../src/config.js';
import { runCli } from './helpers/cli.js';

const REPO = resolve(import.meta.dirname, '..');
const K8S = join(REPO, 'k8s');
const CLI = join(REPO, 'dist/cli/main.js');
const { version } = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string };

const OVERLAYS = ['cpu-serving', 'cpu-training', 'gpu-training', 'sweep'];
const COMPONENTS = ['hpa', 'servicemonitor'];

// One model class per kind the manifests use: its constructor takes the object, validate() throws.
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/ServiceAccount': ServiceAccount,
  'v1/Service': Service,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
  'v1/ConfigMap': ConfigMap,
  'apps/v1/Deployment': Deployment,
  'batch/v1/Job': Job,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
};

interface Container {
  name: string;
  image: string;
  imagePullPolicy?: string;
  command?: string[];
  args: string[];
  ports?: Array<{ name: string; containerPort: number }>;
  resources: { requests: Record<string, string | number>; limits: Record<string, string | number> };
  volumeMounts: Array<{ name: string; mountPath: string; subPath?: string; readOnly?: boolean }>;
  readinessProbe?: { httpGet: { path: string; port: string } };
  livenessProbe?: { httpGet: { path: string; port: string } };
  startupProbe?: { httpGet: { path: string; port: string } };
  securityContext: Record<string, unknown>;
}

interface PodSpec {
  containers: Container[];
  securityContext: Record<string, unknown> & { runAsUser: number };
  automountServiceAccountToken?: boolean;
  serviceAccountName?: string;
  volumes: Array<{
    name: string;
    persistentVolumeClaim?: { claimName: string };
    configMap?: { name: string };
  }>;
}

interface Resource {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  automountServiceAccountToken?: boolean;
  data?: Record<string, string>;
  spec: Record<string, unknown> & {
    template?: { spec: PodSpec };
    ports?: Array<{ port: number; targetPort: string }>;
    selector?: { matchLabels?: Record<string, string> } & Record<string, unknown>;
  };
}

const kubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' });
const noKubectl = kubectl.error || kubectl.status !== 0 ? 'kubectl is not installed' : '';
if (noKubectl) console.warn(`k8s overlays not rendered: ${noKubectl}`);

const scratch = mkdtempSync(join(tmpdir(), 'k8s-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function render(dir: string): Resource[] {
  const yaml = execFileSync('kubectl', ['kustomize', dir], { encoding: 'utf8' });
  return parseAllDocuments(yaml).map((d) => {
    expect(d.errors, dir).toEqual([]);
    return d.toJS() as Resource;
  });
}

/** An overlay with the optional components added, as a user would add them. */
function renderWithComponents(overlay: string, components: string[]): Resource[] {
  const dir = mkdtempSync(join(scratch, `${overlay}-`));
  const rel = (p: string) => relative(dir, join(K8S, p));
  writeFileSync(
    join(dir, 'kustomization.yaml'),
    [
      'apiVersion: kustomize.config.k8s.io/v1beta1',
      'kind: Kustomization',
      'resources:',
      `  - ${rel(`overlays/${overlay}`)}`,
      'components:',
      ...components.map((c) => `  - ${rel(`components/${c}`)}`),
      '',
    ].join('\n'),
  );
  return render(dir);
}

/** The schema's verdict on one object: [] when valid, else the messages. */
export function schemaProblems(resource: Resource): string[] {
  const Model = MODELS[`${resource.apiVersion}/${resource.kind}`];
  if (!Model) return [`${resource.apiVersion} ${resource.kind}: no schema in the test's list`];
  try {
    new Model(resource as never).validate();
    return [];
  } catch (error) {
    return [`${resource.kind} ${resource.metadata.name}: ${(error as Error).message}`];
  }
}

function flagValue(args: string[], flag: string): string | undefined {
  const i = args.indexOf(flag);
  return i < 0 ? undefined : args[i + 1];
}

function workload(resources: Resource[], kind: string): Resource {
  const found = resources.find((r) => r.kind === kind);
  expect(found, kind).toBeDefined();
  return found!;
}

describe.skipIf(noKubectl)('k8s overlays, rendered with kubectl kustomize', () => {
  const rendered = Object.fromEntries(OVERLAYS.map((o) => [o, render(join(K8S, 'overlays', o))]));
  const withComponents = renderWithComponents('cpu-serving', COMPONENTS);
  const all = [...Object.values(rendered).flat(), ...withComponents];

  it('every object is valid against its Kubernetes schema (and the ServiceMonitor against its CRD)', () => {
    expect(all.flatMap(schemaProblems)).toEqual([]);
    // The validation bites: a wrong type and a missing required field fail.
    const deployment = structuredClone(workload(rendered['cpu-serving']!, 'Deployment'));
    (deployment.spec as Record<string, unknown>).replicas = 'two';
    expect(schemaProblems(deployment).join()).toMatch(/replicas must be integer/);
    const job = structuredClone(workload(rendered.sweep!, 'Job'));
    delete (job.spec.template!.spec as Partial<PodSpec>).containers;
    expect(schemaProblems(job).join()).toMatch(/containers/);
  });

  it('each overlay holds the base (volume, service account) and its workloads', () => {
    const kinds = (o: string) => rendered[o]!.map((r) => r.kind).sort();
    expect(kinds('cpu-serving')).toEqual([
      'Deployment',
      'PersistentVolumeClaim',
      'PodDisruptionBudget',
      'Service',
      'ServiceAccount',
    ]);
    expect(kinds('cpu-training')).toEqual(['Job', 'PersistentVolumeClaim', 'ServiceAccount']);
    expect(kinds('gpu-training')).toEqual(['Job', 'PersistentVolumeClaim', 'ServiceAccount']);
    expect(kinds('sweep')).toEqual(['ConfigMap', 'Job', 'PersistentVolumeClaim', 'ServiceAccount']);
    expect(withComponents.map((r) => r.kind)).toEqual(
      expect.arrayContaining(['HorizontalPodAutoscaler', 'ServiceMonitor']),
    );
    const account = workload(rendered['cpu-serving']!, 'ServiceAccount');
    expect(account.automountServiceAccountToken).toBe(false);
  });

  it('every pod is hardened: non-root, RuntimeDefault seccomp, no token, no privileges, read-only root', () => {
    const pods = all.filter((r) => r.spec?.template?.spec);
    expect(pods.length).toBe(5);
    for (const r of pods) {
      const pod = r.spec.template!.spec;
      const where = `${r.kind} ${r.metadata.name}`;
      expect(pod.automountServiceAccountToken, where).toBe(false);
      expect(pod.serviceAccountName, where).toBe('image-classifier');
      expect(pod.securityContext, where).toMatchObject({
        runAsUser: 1000,
        runAsGroup: 1000,
        runAsNonRoot: true,
        seccompProfile: { type: 'RuntimeDefault' },
      });
      for (const c of pod.containers) {
        expect(c.securityContext, where).toEqual({
          allowPrivilegeEscalation: false,
          readOnlyRootFilesystem: true,
          runAsNonRoot: true,
          capabilities: { drop: ['ALL'] },
        });
        expect(c.resources.requests.cpu, where).toBeDefined();
        expect(c.resources.requests.memory, where).toBeDefined();
        expect(c.resources.limits.cpu, where).toBeDefined();
        expect(c.resources.limits.memory, where).toBeDefined();
        // Node sees the node's cores, not the CPU limit: --threads says how many to use.
        const threads = c.args.join(' ').match(/--threads '?(\d+)/)?.[1];
        expect(threads, where).toBe(String(c.resources.limits.cpu));
        // A read-only root needs a writable /tmp.
        expect(
          c.volumeMounts.map((m) => m.mountPath),
          where,
        ).toContain('/tmp');
        expect(c.imagePullPolicy, where).toBe('IfNotPresent');
      }
      const claim = pod.volumes.find((v) => v.persistentVolumeClaim)!;
      expect(claim.persistentVolumeClaim!.claimName).toBe('image-classifier');
    }
  });

  it('images are pinned to the package version (the tag docker:build gives), never :latest', () => {
    const images = (o: string) =>
      rendered[o]!.flatMap((r) => r.spec?.template?.spec.containers.map((c) => c.image) ?? []);
    for (const o of ['cpu-serving', 'cpu-training', 'sweep'])
      expect(images(o), o).toEqual([`image-classifier:${version}`]);
    expect(images('gpu-training')).toEqual([`image-classifier:${version}-gpu`]);
    const readme = readFileSync(join(K8S, 'README.md'), 'utf8');
    expect(readme).toContain(`docker tag image-classifier:${version} `);
    expect(readme).not.toMatch(/image-classifier:latest/);
  });

  it('train with flags the trainer has, and serve the run the CPU Job trains', async () => {
    const known = new Set(flagSpecs().map((s) => `--${s.flag}`));
    const trainer = workload(rendered['cpu-training']!, 'Job').spec.template!.spec.containers[0]!;
    const gpu = workload(rendered['gpu-training']!, 'Job').spec.template!.spec.containers[0]!;
    for (const c of [trainer, gpu])
      for (const word of c.args.filter((a) => a.startsWith('--'))) expect(known, word).toContain(word);
    expect(flagValue(gpu.args, '--device')).toBe('gpu');
    expect(gpu.resources.limits['nvidia.com/gpu']).toBe(1);

    const server = workload(rendered['cpu-serving']!, 'Deployment').spec.template!.spec.containers[0]!;
    const run = `${flagValue(trainer.args, '--experiment-name')}/${flagValue(trainer.args, '--run-name')}`;
    expect(server.args.slice(0, 2)).toEqual(['serve', `experiments/${run}`]);
    expect(flagValue(server.args, '--host')).toBe('0.0.0.0');
    const help = await runCli(['serve', '--help']);
    expect(help.code).toBe(0);
    for (const word of server.args.filter((a) => a.startsWith('--')))
      expect(help.stdout, word).toContain(word);
    expect(server.volumeMounts.find((m) => m.mountPath === '/experiments')!.readOnly).toBe(true);
    expect(trainer.volumeMounts).toContainEqual(
      expect.objectContaining({ mountPath: '/data', subPath: 'data' }),
    );
  });

  it('probe /healthz on the port the server listens on; Service, PDB, HPA and ServiceMonitor find it', () => {
    const deployment = workload(withComponents, 'Deployment');
    const server = deployment.spec.template!.spec.containers[0]!;
    const port = Number(flagValue(server.args, '--port'));
    expect(server.ports).toEqual([{ name: 'http', containerPort: port }]);
    for (const probe of [server.startupProbe, server.readinessProbe, server.livenessProbe])
      expect(probe?.httpGet).toEqual({ path: '/healthz', port: 'http' });
    const podLabels = (
      deployment.spec.template as unknown as { metadata: { labels: Record<string, string> } }
    ).metadata.labels;
    const selects = (selector: Record<string, string> | undefined) =>
      Object.entries(selector ?? {}).every(([k, v]) => podLabels[k] === v);
    const service = workload(withComponents, 'Service');
    expect(service.spec.ports![0]!.targetPort).toBe('http');
    expect(selects(service.spec.selector as Record<string, string>)).toBe(true);
    const pdb = workload(withComponents, 'PodDisruptionBudget');
    expect(selects(pdb.spec.selector!.matchLabels)).toBe(true);
    // A PDB that allows no disruption would block node drains: fewer than the replicas must be required.
    expect(Number(pdb.spec.minAvailable)).toBeLessThan(Number(deployment.spec.replicas));
    const hpa = workload(withComponents, 'HorizontalPodAutoscaler');
    expect(hpa.spec.scaleTargetRef).toEqual({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      name: deployment.metadata.name,
    });
    const monitor = workload(withComponents, 'ServiceMonitor');
    expect(
      Object.entries(monitor.spec.selector!.matchLabels!).every(
        ([k, v]) => service.metadata.labels?.[k] === v,
      ),
    ).toBe(true);
    expect(monitor.spec.endpoints).toEqual([expect.objectContaining({ port: 'http', path: '/metrics' })]);
  });

  it('the sweep is an Indexed Job with one completion per trial, each index training its own trial', () => {
    const job = workload(rendered.sweep!, 'Job');
    const configMap = workload(rendered.sweep!, 'ConfigMap');
    const pod = job.spec.template!.spec;
    expect(job.spec.completionMode).toBe('Indexed');
    expect(pod.volumes.find((v) => v.configMap)!.configMap!.name).toBe(configMap.metadata.name);
    const sweepFile = join(scratch, 'sweep.yaml');
    writeFileSync(sweepFile, configMap.data!['sweep.yaml']!);
    const matrix = JSON.parse(
      execFileSync('node', [CLI, 'sweep', sweepFile, '--matrix'], { encoding: 'utf8' }),
    ) as { include: Array<{ trial: string }> };
    expect(job.spec.completions).toBe(matrix.include.length);

    // The container's script, run with a stand-in trainer: --matrix goes to the real CLI, the training
    // command is printed. Index i trains the i-th trial; an index past the end fails.
    const container = pod.containers[0]!;
    expect(container.command).toEqual(['/bin/sh', '-c']);
    const bin = mkdtempSync(join(scratch, 'bin-'));
    writeFileSync(
      join(bin, 'image-classifier-trainer'),
      [
        '#!/bin/sh',
        `case " $* " in *" --matrix "*) exec node ${JSON.stringify(CLI)} sweep ${JSON.stringify(sweepFile)} --matrix ;; esac`,
        'printf "%s\\n" "$@"',
      ].join('\n'),
    );
    chmodSync(join(bin, 'image-classifier-trainer'), 0o755);
    const runIndex = (index: number) =>
      spawnSync('/bin/sh', ['-c', container.args[0]!], {
        encoding: 'utf8',
        env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, JOB_COMPLETION_INDEX: String(index) },
      });
    matrix.include.forEach(({ trial }, index) => {
      const result = runIndex(index);
      expect(result.status, result.stderr).toBe(0);
      const args = result.stdout.trim().split('\n');
      expect(args.slice(0, 4)).toEqual(['sweep', '/sweep/sweep.yaml', '--trial', trial]);
    });
    const past = runIndex(matrix.include.length);
    expect(past.status).not.toBe(0);
    expect(past.stderr).toContain('no trial for index');
    // The mounted file is where the script reads it.
    expect(container.volumeMounts).toContainEqual(
      expect.objectContaining({ name: 'sweep', mountPath: '/sweep' }),
    );
  });

  it('the sweep passes only flags that `sweep` has', async () => {
    const script = workload(rendered.sweep!, 'Job').spec.template!.spec.containers[0]!.args[0]!;
    const help = await runCli(['sweep', '--help']);
    expect(help.code).toBe(0);
    for (const word of script.match(/(?<=\s)--[a-z][a-z-]*/g) ?? [])
      expect(help.stdout, word).toContain(word);
  });
});
