// k8s/: the manifests parse, use flags the CLI has, and agree with each other (the run the server
// serves is the one the Job trains, probes hit /healthz on the port the server listens on).
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { flagSpecs } from '../src/config.js';
import { runCli } from './helpers/cli.js';

const K8S = resolve(import.meta.dirname, '../k8s');

interface Container {
  args: string[];
  image: string;
  ports?: Array<{ name: string; containerPort: number }>;
  resources: { requests: Record<string, string>; limits: Record<string, string> };
  volumeMounts: Array<{ name: string; mountPath: string; subPath?: string; readOnly?: boolean }>;
  readinessProbe?: { httpGet: { path: string; port: string } };
  livenessProbe?: { httpGet: { path: string; port: string } };
  startupProbe?: { httpGet: { path: string; port: string } };
}

interface PodSpec {
  containers: Container[];
  securityContext: { runAsUser: number };
  volumes: Array<{ name: string; persistentVolumeClaim?: { claimName: string } }>;
}

interface Resource {
  kind: string;
  metadata: { name: string };
  spec: {
    template?: { spec: PodSpec };
    ports?: Array<{ port: number; targetPort: string }>;
    selector?: Record<string, unknown>;
  };
  resources?: string[];
}

function load(file: string): Resource[] {
  return parseAllDocuments(readFileSync(join(K8S, file), 'utf8')).map((d) => {
    expect(d.errors, file).toEqual([]);
    return d.toJS() as Resource;
  });
}

function flagValue(args: string[], flag: string): string | undefined {
  const i = args.indexOf(flag);
  return i < 0 ? undefined : args[i + 1];
}

describe('k8s manifests', () => {
  const [pvc] = load('storage.yaml');
  const [job] = load('train-job.yaml');
  const [deployment, service] = load('serve.yaml');
  const trainer = job!.spec.template!.spec.containers[0]!;
  const server = deployment!.spec.template!.spec.containers[0]!;

  it('are the resources kustomization.yaml lists', () => {
    const [kustomization] = load('kustomization.yaml');
    expect(kustomization!.resources).toEqual(['storage.yaml', 'train-job.yaml', 'serve.yaml']);
    expect([pvc!.kind, job!.kind, deployment!.kind, service!.kind]).toEqual([
      'PersistentVolumeClaim',
      'Job',
      'Deployment',
      'Service',
    ]);
  });

  it('train with flags the trainer has, and serve the run the Job trains', async () => {
    const known = new Set(flagSpecs().map((s) => `--${s.flag}`));
    for (const word of trainer.args.filter((a) => a.startsWith('--'))) expect(known, word).toContain(word);
    const run = `${flagValue(trainer.args, '--experiment-name')}/${flagValue(trainer.args, '--run-name')}`;
    expect(server.args.slice(0, 2)).toEqual(['serve', `experiments/${run}`]);
    expect(flagValue(server.args, '--host')).toBe('0.0.0.0');
    const help = await runCli(['serve', '--help']);
    expect(help.code).toBe(0);
    for (const word of server.args.filter((a) => a.startsWith('--')))
      expect(help.stdout, word).toContain(word);
  });

  it('probe /healthz on the port the server listens on, and the Service targets it', () => {
    const port = Number(flagValue(server.args, '--port'));
    expect(server.ports).toEqual([{ name: 'http', containerPort: port }]);
    for (const probe of [server.startupProbe, server.readinessProbe, server.livenessProbe]) {
      expect(probe?.httpGet).toEqual({ path: '/healthz', port: 'http' });
    }
    expect(service!.spec.ports![0]!.targetPort).toBe('http');
  });

  it('set resources, run as the image user, and mount the volume where the image expects it', () => {
    for (const [pod, container] of [
      [job!.spec.template!.spec, trainer],
      [deployment!.spec.template!.spec, server],
    ] as const) {
      expect(container.resources.requests.cpu).toBeDefined();
      expect(container.resources.limits.memory).toBeDefined();
      // Node sees the node's cores, not the CPU limit: --threads says how many to use.
      expect(flagValue(container.args, '--threads')).toBe(container.resources.limits.cpu);
      expect(pod.securityContext.runAsUser).toBe(1000);
      const claim = pod.volumes.find((v) => v.persistentVolumeClaim)!;
      expect(claim.persistentVolumeClaim!.claimName).toBe(pvc!.metadata.name);
      expect(container.volumeMounts).toContainEqual(
        expect.objectContaining({ name: claim.name, mountPath: '/experiments', subPath: 'experiments' }),
      );
    }
    expect(server.volumeMounts.find((m) => m.mountPath === '/experiments')!.readOnly).toBe(true);
    expect(trainer.volumeMounts).toContainEqual(
      expect.objectContaining({ mountPath: '/data', subPath: 'data' }),
    );
  });
});
