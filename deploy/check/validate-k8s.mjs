// Validates every Kubernetes manifest under the given folders (recursively) against the API
// schemas of the `kubernetes-models` package: each document's apiVersion/kind must be a known API
// type, and the object must pass that type's OpenAPI schema (types, required fields, formats).
// Those schemas allow fields they do not define, so a misspelt optional field is not caught here
// (kubeconform --strict would; it is not packaged where this runs). kustomization.yaml files are
// checked to name files that exist.
//   node deploy/check/validate-k8s.mjs deploy/k8s [more folders...]
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';

const GROUP_MODULE = (apiVersion) => {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  return group ? `kubernetes-models/${group}/${version}` : `kubernetes-models/${version}`;
};

function* yamlFiles(dir) {
  for (const e of readdirSync(dir).sort()) {
    const p = path.join(dir, e);
    if (statSync(p).isDirectory()) yield* yamlFiles(p);
    else if (/\.ya?ml$/.test(e)) yield p;
  }
}

let errors = 0;
let count = 0;
const report = (file, i, msg) => {
  errors++;
  console.error(`${file} (document ${i + 1}): ${msg}`);
};

for (const dir of process.argv.slice(2)) {
  for (const file of yamlFiles(dir)) {
    const docs = parseAllDocuments(readFileSync(file, 'utf8'));
    for (const [i, doc] of docs.entries()) {
      if (doc.errors.length) {
        report(file, i, `YAML: ${doc.errors[0].message}`);
        continue;
      }
      const obj = doc.toJS();
      if (obj === null || obj === undefined) continue;
      if (path.basename(file).startsWith('kustomization.')) {
        for (const r of [...(obj.resources ?? []), ...(obj.patches ?? []).map((p) => p.path).filter(Boolean)]) {
          if (!/^[a-z]+:\/\//.test(r) && !existsSync(path.join(path.dirname(file), r))) report(file, i, `kustomization names '${r}', which does not exist`);
        }
        count++;
        continue;
      }
      if (!obj.apiVersion || !obj.kind) {
        report(file, i, 'no apiVersion/kind');
        continue;
      }
      let Model;
      try {
        Model = (await import(GROUP_MODULE(obj.apiVersion)))[obj.kind];
      } catch {
        Model = undefined;
      }
      if (!Model) {
        report(file, i, `${obj.apiVersion} ${obj.kind} is not a known Kubernetes API type`);
        continue;
      }
      try {
        new Model(obj).validate();
      } catch (e) {
        report(file, i, `${obj.kind} ${obj.metadata?.name ?? '?'}: ${e.message}`);
        continue;
      }
      count++;
    }
  }
}

if (errors) {
  console.error(`${errors} problem(s) in Kubernetes manifests`);
  process.exit(1);
}
console.log(`${count} Kubernetes document(s) valid`);
