/** The topics of §1, with the configurable prefix. */
export interface Topics {
  mailEvents: string;
  userInteractions: string;
  userPreferences: string;
  legacyDecisions: string;
  mailDecisions: string;
  mailDecisionsShadow: string;
  parityMismatches: string;
  rolloutFlags: string;
  tenantPolicies: string;
}

export function topicNames(prefix = ''): Topics {
  return {
    mailEvents: `${prefix}mail-events`,
    userInteractions: `${prefix}user-interactions`,
    userPreferences: `${prefix}user-preferences`,
    legacyDecisions: `${prefix}legacy-decisions`,
    mailDecisions: `${prefix}mail-decisions`,
    mailDecisionsShadow: `${prefix}mail-decisions-shadow`,
    parityMismatches: `${prefix}parity-mismatches`,
    rolloutFlags: `${prefix}rollout-flags`,
    tenantPolicies: `${prefix}tenant-policies`,
  };
}

/** Topics and their cleanup policy; the four co-partitioned ones share the partition count. */
export function topicSpecs(t: Topics): { topic: string; compact: boolean; coPartitioned: boolean }[] {
  return [
    { topic: t.mailEvents, compact: false, coPartitioned: true },
    { topic: t.userInteractions, compact: false, coPartitioned: true },
    { topic: t.userPreferences, compact: true, coPartitioned: true },
    { topic: t.legacyDecisions, compact: false, coPartitioned: true },
    { topic: t.mailDecisions, compact: false, coPartitioned: false },
    { topic: t.mailDecisionsShadow, compact: false, coPartitioned: false },
    { topic: t.parityMismatches, compact: false, coPartitioned: false },
    { topic: t.rolloutFlags, compact: true, coPartitioned: false },
    { topic: t.tenantPolicies, compact: true, coPartitioned: false },
  ];
}
