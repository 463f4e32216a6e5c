-- One database per service (the services never share tables). Run once by the postgres image's
-- entrypoint on an empty data volume, as POSTGRES_USER, which then owns them.
CREATE DATABASE catalogue;
CREATE DATABASE enrolment;
CREATE DATABASE billing;
CREATE DATABASE reporting;
