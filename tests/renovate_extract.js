// What Renovate's own regex manager extracts from a file with a repository's renovate.json:
//   node renovate_extract.js RENOVATE_JSON FILE  ->  JSON list of {depName, currentValue, datasource, groupName, enabled, ...}
// Run with NODE_PATH at the pinned renovate package's node_modules (.ci/renovate).
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const { extractPackageFile } = require("renovate/dist/modules/manager/custom/regex");
const { applyPackageRules } = require("renovate/dist/util/package-rules");

const [configPath, file] = process.argv.slice(2);
const config = JSON.parse(fs.readFileSync(configPath, "utf8"));
const relative = path.relative(path.dirname(configPath), file);
const content = fs.readFileSync(file, "utf8");
async function main() {
const found = [];
for (const [index, manager] of (config.customManagers || []).entries()) {
  if (manager.customType !== "regex") continue;
  if (!manager.fileMatch.some((pattern) => new RegExp(pattern).test(relative))) continue;
  const result = extractPackageFile(content, relative, manager);
  for (const dep of (result && result.deps) || []) {
    // The package rules as Renovate applies them to this dependency: its group, and whether it is looked up.
    const ruled = await applyPackageRules({ ...config, ...dep, packageName: dep.packageName || dep.depName });
    found.push({
      groupName: ruled.groupName || null,
      enabled: ruled.enabled !== false,
      allowedVersions: ruled.allowedVersions || null,
      manager: index,
      depName: dep.depName,
      currentValue: dep.currentValue,
      datasource: dep.datasource,
      replaceString: dep.replaceString,
    });
  }
}
process.stdout.write(JSON.stringify(found, null, 1) + "\n");
}

main().catch((error) => {
  process.stderr.write(String(error && error.stack ? error.stack : error) + "\n");
  process.exit(1);
});
