"""FHIR search (http://hl7.org/fhir/R4/search.html): parameter registry, index values, query engine."""
