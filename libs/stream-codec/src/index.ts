export * from './errors';
export * from './source';
export * from './bytes';
export { StreamReader } from './reader';
export * from './v2/constants';
export * from './v2/frame';
// v2 codec (decode, encode, verify, inspect)
export * from './v2/types';
export { decodeV2, type DecodeOptions } from './v2/decoder';
export { encodeV2, ItemEncoder, type EncodeOptions } from './v2/encoder';
export { V2Verifier, hvmContextCpus, type VerifierOptions } from './v2/verifier';
export { decodeLibxcBody, encodeLibxcBody, encodePageData, pageDataBody, pfnEntry, libxcRecordName, swap64 } from './v2/records';
export {
  decodeLibxlBody,
  encodeLibxlBody,
  decodeLibxlHeader,
  encodeLibxlHeaderFull,
  decodeXlHeaderFixed,
  encodeXlHeaderFull,
  xlConfigText,
  xlOptionalDataFor,
  xenstorePairs,
  encodeXenstorePairs,
  libxlRecordName,
} from './v2/libxl';
export { PfnSet } from './v2/pfnset';
export { sniffFraming, isV2Marker } from './sniff';
export { verifyStream, verifyV2, verifyingTee, streamFactsOf, type StreamFacts, type VerifyStreamOptions } from './verify';
export { inspectStream, describeEmulatorContext, type InspectReport, type RecordStat, type EmulatorInfo } from './inspect';
// legacy images (read, convert, detect, write) and the v2 <-> legacy entry points
export * as legacyConstants from './legacy/constants';
export { HVM_PARAM as LEGACY_HVM_PARAM, LEGACY_LIMITS } from './legacy/constants';
export { writeLegacy, encodePhysmap, encodeLegacyXlHeader, vcpuContextSize, type LegacyImage, type LegacyPage, type LegacyRawChunk, type LegacyBodyItem, type LegacyVcpu, type PhysmapEntry, type LegacyWidth, type LegacyGuest } from './legacy/writer';
export { LegacyConverter, convertLegacy, type LegacyConvertOptions, type LegacyConvertSummary } from './legacy/convert';
export { detectLegacy, DETECT_PREFIX, type LegacyDetection, type DetectOptions } from './legacy/detect';
export { synthStream, hvmContextBlob, type SynthOptions } from './v2/synth';
export { ingestToV2, readerRemainder, sniffV2, type IngestOptions } from './ingest';
export { legacyFromV2, pvXsaveSize, EXT_VCPU_CONTEXT_LEGACY, type LegacyFromV2Options } from './downconvert';
