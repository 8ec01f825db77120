"""HL7 FHIR R5 views of the knowledge graph: Evidence, EvidenceVariable and Citation.

graph (what a build holds, read by SELECTs) -> mapping (FHIR JSON) -> bundle (validated with
fhir.resources' R5 models, indexed, bundled); server holds the interface's own resources.
"""
