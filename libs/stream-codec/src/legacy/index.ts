/**
 * `@ferry/stream-codec/legacy`: the legacy edge: detect, convert to v2 and write legacy images,
 * with the reader the converter takes and the errors it throws. A caller that only converts (the
 * `convert-legacy-stream` drop-in) loads this module graph, not the whole codec's; v2 -> legacy
 * (`legacyFromV2`) and `ingestToV2` need the v2 decoder and verifier and come from the package root,
 * which also exports everything here.
 */
export * from '../errors';
export { StreamReader } from '../reader';
export * as legacyConstants from './constants';
export { HVM_PARAM as LEGACY_HVM_PARAM, LEGACY_LIMITS } from './constants';
export { writeLegacy, encodePhysmap, encodeLegacyXlHeader, vcpuContextSize, type LegacyImage, type LegacyPage, type LegacyRawChunk, type LegacyBodyItem, type LegacyVcpu, type PhysmapEntry, type LegacyWidth, type LegacyGuest } from './writer';
export { LegacyConverter, convertLegacy, type LegacyConvertOptions, type LegacyConvertSummary } from './convert';
export { detectLegacy, DETECT_PREFIX, type LegacyDetection, type DetectOptions } from './detect';
